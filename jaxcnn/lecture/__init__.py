"""The alternative views of convolution that no training path needs: Toeplitz matrices, hand-made
kernels, and the side-by-side comparison of every view of one convolution.

May import: ``jaxcnn.ops`` and ``jaxcnn.nn``.
"""

from jaxcnn.lecture.kernels import feature_stages, kernel_bank
from jaxcnn.lecture.toeplitz import conv_matrix, convolve
from jaxcnn.lecture.views import compare_views, worked_numbers

__all__ = ["conv_matrix", "convolve", "kernel_bank", "feature_stages", "compare_views", "worked_numbers"]
