"""Named networks, each a :func:`jaxcnn.layers.serial` model.

Hidden layers use He initialisation (they feed a ReLU); the output layer uses
Glorot. Initialisation is deterministic from the key passed to ``init``.
"""

from __future__ import annotations

from jaxcnn.nn.layers import (
    AvgPool, BatchNorm, Conv, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool, Relu, residual, serial,
)

__all__ = [
    "lecture_net", "classic_net", "sequence_net", "classic_dropout_net", "basic_block", "resnet", "get_model",
]

MNIST_SHAPE = (-1, 28, 28, 1)


def lecture_net(num_classes: int = 10, *, impl: str = "auto"):
    """The lecture's MNIST network: conv 3×3×32, conv 3×3×64, dense 400, dense 10 (14,768,826 parameters).

    28×28×1 → Conv 3×3, 32 → ReLU → Conv 3×3, 64 → ReLU → Flatten → Dense 400 →
    ReLU → Dense 10. Parameters: 9×32+32 = 320; 64×(9×32+1) = 18,496;
    24×24×64×400+400 = 14,746,000; 400×10+10 = 4,010; total 14,768,826.
    """
    return serial(
        Conv(32, 3, impl=impl), Relu(),
        Conv(64, 3, impl=impl), Relu(),
        Flatten(), Dense(400), Relu(),
        Dense(num_classes, init="glorot"),
    )


def classic_net(num_classes: int = 10, *, impl: str = "auto"):
    """The usual small MNIST CNN, with a 2×2 max-pooling stage.

    Conv 3×3, 32 → ReLU → Conv 3×3, 64 → ReLU → MaxPool 2×2 → Flatten →
    Dense 128 → ReLU → Dense 10.
    """
    return serial(
        Conv(32, 3, impl=impl), Relu(),
        Conv(64, 3, impl=impl), Relu(),
        MaxPool(2), Flatten(),
        Dense(128), Relu(),
        Dense(num_classes, init="glorot"),
    )


def sequence_net(num_classes: int = 10, *, channels=(16, 32), window: int = 5, impl: str = "auto"):
    """A 1-D CNN of multi-channel 1-D convolutions.

    For any ``(batch, length, channels)`` input: [Conv1D k, SAME → ReLU →
    MaxPool 2 (SAME)] per entry of ``channels`` → AvgPool 2 (SAME) → Flatten →
    Dense ``num_classes``. ``SAME`` padding keeps every length ≥ 1 valid.
    """
    stages = []
    for width in channels:
        stages += [Conv(width, window, padding="SAME", impl=impl), Relu(), MaxPool(2, padding="SAME")]
    return serial(*stages, AvgPool(2, padding="SAME"), Flatten(), Dense(num_classes, init="glorot"))


def classic_dropout_net(num_classes: int = 10, *, impl: str = "auto"):
    """The classic net with the Keras ``mnist_cnn`` recipe's dropout.

    Conv 3×3, 32 → ReLU → Conv 3×3, 64 → ReLU → MaxPool 2×2 → Dropout 0.25 →
    Flatten → Dense 128 → ReLU → Dropout 0.5 → Dense 10. Needs a key in training.
    """
    return serial(
        Conv(32, 3, impl=impl), Relu(),
        Conv(64, 3, impl=impl), Relu(),
        MaxPool(2), Dropout(0.25), Flatten(),
        Dense(128), Relu(), Dropout(0.5),
        Dense(num_classes, init="glorot"),
    )


def basic_block(channels: int, stride: int = 1, *, project: bool = False, impl: str = "auto"):
    """He et al.'s basic residual block: ReLU(BN(Conv(ReLU(BN(Conv(x))))) + shortcut(x)).

    Both convolutions are 3×3 ``SAME``, the first with ``stride``, without bias (the BatchNorm
    after each cancels it: its gradient would be identically zero). The shortcut is the identity,
    or, with ``project`` (a stride or a change of channels), a 1×1 convolution with ``stride``
    followed by batch normalisation.
    """
    block = serial(
        Conv(channels, 3, stride=stride, padding="SAME", impl=impl, bias=False), BatchNorm(), Relu(),
        Conv(channels, 3, padding="SAME", impl=impl, bias=False), BatchNorm(),
    )
    shortcut = serial(Conv(channels, 1, stride=stride, impl=impl, bias=False), BatchNorm()) if project else None
    name = f"BasicBlock{channels}" + (f"/{stride}+projection" if project else "")
    return serial(residual(block, shortcut, name=name), Relu())


def resnet(num_classes: int = 10, *, blocks_per_stage: int = 3, channels=(16, 32, 64), impl: str = "auto"):
    """A ResNet for 28×28×1 inputs (ResNet-20 with the defaults: 6·3 + 2 weighted layers).

    3×3 stem conv (16, no bias) → BN → ReLU; three stages of ``blocks_per_stage`` basic blocks
    (:func:`basic_block`) with 16, 32, 64 channels, stride 2 and a 1×1 conv + BN projection
    shortcut at the start of the second and third stages; global average pool → Dense 10.
    Needs state (the running statistics of its batch normalisations).
    """
    if not isinstance(blocks_per_stage, int) or isinstance(blocks_per_stage, bool) or blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be a positive int, got {blocks_per_stage!r}")
    layers = [Conv(channels[0], 3, padding="SAME", impl=impl, bias=False), BatchNorm(), Relu()]
    for stage, width in enumerate(channels):
        for index in range(blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(basic_block(width, stride, project=stride != 1, impl=impl))
    return serial(*layers, GlobalAvgPool(), Dense(num_classes, init="glorot"))


MODELS = {
    "lecture": lecture_net, "classic": classic_net, "sequence": sequence_net,
    "classic-dropout": classic_dropout_net, "resnet": resnet,
}


def get_model(name: str, **kwargs):
    """Builds a named model: one of :data:`MODELS`."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)
