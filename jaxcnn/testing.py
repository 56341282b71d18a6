"""Public face of the hand-rule checker: only re-exports :func:`jaxcnn.proof.testing.assert_hand_rule`.

``jaxcnn.testing.assert_hand_rule(forward, backward, *arrays, rtol=1e-10, seed=0, **config)``
proves a user's hand rule equal to ``jax.vjp(forward)`` in float64, under ``jax.jit`` and
``jax.vmap``; the implementation and its documentation live in :mod:`jaxcnn.proof.testing`.
"""

from jaxcnn.proof.testing import assert_hand_rule

__all__ = ["assert_hand_rule"]
