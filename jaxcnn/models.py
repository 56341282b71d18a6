"""Named networks from the lecture notes, each a :func:`jaxcnn.layers.serial` model.

Hidden layers use He initialisation (they feed a ReLU); the output layer uses
Glorot. Initialisation is deterministic from the key passed to ``init``.
"""

from __future__ import annotations

from jaxcnn.layers import AvgPool, Conv, Dense, Flatten, MaxPool, Relu, serial

MNIST_SHAPE = (-1, 28, 28, 1)


def lecture_net(num_classes: int = 10, *, impl: str = "auto"):
    """Seed 000's MNIST network, exactly.

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
    """The usual small MNIST CNN, with seed 003's pooling stage.

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
    """A 1-D CNN in the spirit of seed 002 (multi-channel 1-D convolutions).

    For any ``(batch, length, channels)`` input: [Conv1D k, SAME → ReLU →
    MaxPool 2 (SAME)] per entry of ``channels`` → AvgPool 2 (SAME) → Flatten →
    Dense ``num_classes``. ``SAME`` padding keeps every length ≥ 1 valid.
    """
    stages = []
    for width in channels:
        stages += [Conv(width, window, padding="SAME", impl=impl), Relu(), MaxPool(2, padding="SAME")]
    return serial(*stages, AvgPool(2, padding="SAME"), Flatten(), Dense(num_classes, init="glorot"))


MODELS = {"lecture": lecture_net, "classic": classic_net, "sequence": sequence_net}


def get_model(name: str, **kwargs):
    """Builds a named model: one of :data:`MODELS`."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)
