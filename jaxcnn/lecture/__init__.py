"""The alternative views of convolution that no training path needs: Toeplitz matrices, hand-made
kernels, and the side-by-side comparison of every view of one convolution.

May import: ``jaxcnn.ops`` and ``jaxcnn.nn``.
"""
