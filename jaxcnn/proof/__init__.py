"""The proof floor: the three gradient modes, the mode comparison, the checker for users' hand rules.

May import: ``jaxcnn.nn`` and ``jaxcnn.ops``.
"""

from jaxcnn.proof.mode_comparison import assert_modes_agree, compare_modes, format_rows, mode_gradients
from jaxcnn.proof.gradients import backprop, loss_and_grad, loss_grad_and_logits
from jaxcnn.proof.testing import assert_hand_rule

__all__ = [
    "loss_and_grad", "loss_grad_and_logits", "backprop",
    "compare_modes", "mode_gradients", "format_rows",
    "assert_hand_rule", "assert_modes_agree",
]
