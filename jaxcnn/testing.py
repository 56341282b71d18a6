"""Public face of the checkers: re-exports :func:`jaxcnn.proof.testing.assert_hand_rule` (an op) and
:func:`jaxcnn.proof.mode_comparison.assert_modes_agree` (a whole layer or model, three modes).

``jaxcnn.testing.assert_hand_rule(forward, backward, *arrays, rtol=1e-10, seed=0, **config)``
proves a user's hand rule equal to ``jax.vjp(forward)`` in float64, under ``jax.jit`` and
``jax.vmap``; the implementation and its documentation live in :mod:`jaxcnn.proof.testing`.
"""

from jaxcnn.proof.mode_comparison import assert_modes_agree
from jaxcnn.proof.testing import assert_hand_rule

__all__ = ["assert_hand_rule", "assert_modes_agree"]
