"""jaxcnn: pure-functional JAX CNNs whose every op has a hand-derived gradient."""

from jaxcnn import augment, checkpoint, data, layers, models, optim, plots, steps, train
from jaxcnn.activations import log_softmax, relu, relu_backward, softmax
from jaxcnn.conv import conv, conv_backward
from jaxcnn.dense import dense, dense_backward
from jaxcnn.gradients import backprop, loss_and_grad
from jaxcnn.layers import AvgPool, Conv, Dense, Flatten, Layer, MaxPool, Relu, serial
from jaxcnn.losses import (
    softmax_binary_cross_entropy,
    softmax_binary_cross_entropy_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)
from jaxcnn.manual import hand_rule
from jaxcnn.padding import conv_output_size
from jaxcnn.pool import avg_pool, avg_pool_backward, max_pool, max_pool_backward
from jaxcnn.summary import param_count, summarize_named, summary
from jaxcnn.toeplitz import conv_matrix, convolve
from jaxcnn.train import TrainConfig, evaluate_checkpoint, train_and_evaluate

__version__ = "0.1.0"
