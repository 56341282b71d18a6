"""jaxcnn's ``classic``, ``lecture`` and ``resnet`` networks rebuilt in PyTorch, Flax NNX and Equinox.

The throughput comparison (``experiments/throughput.py``) trains these peers next to jaxcnn;
``tests/test_peers.py`` proves they are the same networks: equal parameter counts, and, with
jaxcnn's params copied in (the ``copy_*`` functions here), equal training-mode logits.

What "the same" takes, read from :mod:`jaxcnn.nn.models`:

* ``classic``: Conv 3×3 1→32 (bias) → ReLU → Conv 3×3 32→64 (bias) → ReLU → MaxPool 2×2 →
  Flatten → Dense 9216→128 → ReLU → Dense 128→10. ``lecture``: the same without the pool,
  Dense 36864→400 → ReLU → Dense 400→10. Every conv ``VALID``.
* ``resnet`` (ResNet-20 for 28×28×1): 3×3 ``SAME`` stem conv 1→16 without bias → BN → ReLU;
  three stages (16, 32, 64 channels) of three basic blocks ``ReLU(BN(conv(ReLU(BN(conv(x)))))
  + shortcut(x))``, 3×3 ``SAME`` convs without bias, the first of stages 2 and 3 with stride 2
  and a projection shortcut (1×1 conv, stride 2, no bias → BN); global average pool → Dense
  64→10. BatchNorm: eps 1e-5, running statistics ``m·old + (1−m)·batch`` with jaxcnn's
  ``m = 0.9`` (PyTorch's ``momentum=0.1``; Flax NNX's and Equinox's ``momentum=0.9``).
* XLA's ``SAME`` at stride 2 pads 28→14 and 14→7 by (0, 1) (the odd pixel on the high side);
  PyTorch's ``padding=1`` pads (1, 1) and reads other pixels, so the PyTorch strided convs pad
  with :class:`SamePad` first. Flax NNX (``padding="SAME"``) and Equinox (``padding="SAME"``)
  pad as XLA does.
* Layouts: jaxcnn is channels-last (kernels ``HWIO``, Dense ``(in, out)``, Flatten over
  ``H, W, C``). Flax NNX is channels-last too, so its kernels are jaxcnn's arrays. PyTorch
  (``NCHW``, kernels ``OIHW``, Linear ``(out, in)``) and Equinox (per example ``CHW``, kernels
  ``OIHW``) flatten over ``C, H, W``: the copy permutes the rows of the first Dense kernel.

PyTorch is imported inside the torch functions, Flax and Equinox inside theirs, so this module
imports with none of them installed.
"""

from __future__ import annotations

import os as _os
import sys as _sys

_sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))  # the repository root: its jaxcnn

import math

import jax
import jax.numpy as jnp
import numpy as np

MODELS = ("classic", "lecture", "resnet")
FRAMEWORKS = ("torch", "nnx", "equinox")
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
BN_MOMENTUM = 0.9  # jaxcnn's: running = 0.9 · running + 0.1 · batch
BN_EPS = 1e-5
RESNET_CHANNELS = (16, 32, 64)
RESNET_BLOCKS = 3
# (conv1 channels, conv2 channels, hidden units, pooled): the two small nets
SMALL = {"classic": (32, 64, 128, True), "lecture": (32, 64, 400, False)}


def _check(name):
    if name not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {name!r}")


def _flat_size(name):
    side = INPUT_SHAPE[0] - 4  # two VALID 3×3 convs
    if SMALL[name][3]:
        side //= 2
    return side, side * side * SMALL[name][1]


def resnet_plan():
    """``[(in_channels, out_channels, stride), ...]``: the nine basic blocks, in order."""
    plan, channels = [], RESNET_CHANNELS[0]
    for stage, width in enumerate(RESNET_CHANNELS):
        for index in range(RESNET_BLOCKS):
            stride = 2 if stage > 0 and index == 0 else 1
            plan.append((channels, width, stride))
            channels = width
    return plan


# ------------------------------------------------------------ jaxcnn's params, unpacked


def _np(a):
    return np.asarray(jax.device_get(a), np.float32)


def unpack_small(params):
    """``[(w, b), ...]`` of the two convs and two Dense layers of a classic/lecture params list."""
    layers = [p for p in params if isinstance(p, dict) and "w" in p]
    assert len(layers) == 4, f"expected 4 weighted layers, got {len(layers)}"
    return [(_np(p["w"]), _np(p["b"])) for p in layers]


def unpack_resnet(params):
    """jaxcnn's ResNet params as plain NumPy: ``{"stem": w, "stem_bn": (scale, offset),
    "blocks": [{"conv1", "bn1", "conv2", "bn2", "proj"?, "proj_bn"?}, ...], "dense": (w, b)}``.

    The params list is ``[stem conv, BN, (), block × 9, (), Dense]``; a block is
    ``[residual, ()]`` with ``residual = [(), [[conv, BN, (), conv, BN], shortcut], ()]`` and
    ``shortcut`` ``()`` (identity) or ``[conv, BN]`` (projection).
    """
    bn = lambda p: (_np(p["scale"]), _np(p["offset"]))  # noqa: E731
    out = {"stem": _np(params[0]["w"]), "stem_bn": bn(params[1]), "blocks": []}
    for block in params[3:3 + len(resnet_plan())]:
        (main, shortcut) = block[0][1]
        entry = {"conv1": _np(main[0]["w"]), "bn1": bn(main[1]), "conv2": _np(main[3]["w"]), "bn2": bn(main[4])}
        if shortcut:
            entry["proj"], entry["proj_bn"] = _np(shortcut[0]["w"]), bn(shortcut[1])
        out["blocks"].append(entry)
    assert len(out["blocks"]) == len(resnet_plan())
    out["dense"] = (_np(params[-1]["w"]), _np(params[-1]["b"]))
    return out


def chw_rows(w, side, channels):
    """A Dense kernel ``(side·side·channels, out)`` whose rows follow an ``H, W, C`` flatten,
    reordered for a ``C, H, W`` flatten (PyTorch's, Equinox's)."""
    out = w.shape[1]
    return w.reshape(side, side, channels, out).transpose(2, 0, 1, 3).reshape(side * side * channels, out)


def oihw(w):
    """An ``HWIO`` kernel as ``OIHW``."""
    return np.ascontiguousarray(np.transpose(w, (3, 2, 0, 1)))


# ------------------------------------------------------------------------ PyTorch


def torch_net(name):
    """The PyTorch ``nn.Module`` of ``name`` (``NCHW`` input ``(N, 1, 28, 28)``)."""
    _check(name)
    import torch  # pylint: disable=import-outside-toplevel
    from torch import nn  # pylint: disable=import-outside-toplevel

    if name in SMALL:
        c1, c2, hidden, pooled = SMALL[name]
        _, flat = _flat_size(name)
        layers = [nn.Conv2d(1, c1, 3), nn.ReLU(), nn.Conv2d(c1, c2, 3), nn.ReLU()]
        layers += [nn.MaxPool2d(2)] if pooled else []
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, NUM_CLASSES))

    class SamePad(nn.Module):
        """XLA's ``SAME`` padding of a ``window``/``stride`` conv: the odd pixel on the high side."""

        def __init__(self, window, stride):
            super().__init__()
            self.window, self.stride = window, stride

        def forward(self, x):
            pads = []
            for n in (x.shape[3], x.shape[2]):  # F.pad: last dimension first
                total = max((math.ceil(n / self.stride) - 1) * self.stride + self.window - n, 0)
                pads += [total // 2, total - total // 2]
            return nn.functional.pad(x, pads)

    def conv3(cin, cout, stride):
        if stride == 1:
            return nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        return nn.Sequential(SamePad(3, stride), nn.Conv2d(cin, cout, 3, stride=stride, bias=False))

    def bn(channels):
        return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=1 - BN_MOMENTUM)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = conv3(cin, cout, stride), bn(cout)
            self.conv2, self.bn2 = conv3(cout, cout, 1), bn(cout)
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), bn(cout))
                             if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(INPUT_SHAPE[-1], RESNET_CHANNELS[0], 3, padding=1, bias=False)
            self.stem_bn = bn(RESNET_CHANNELS[0])
            self.blocks = nn.Sequential(*[Block(*spec) for spec in resnet_plan()])
            self.dense = nn.Linear(RESNET_CHANNELS[-1], NUM_CLASSES)

        def forward(self, x):
            x = self.blocks(torch.relu(self.stem_bn(self.stem(x))))
            return self.dense(x.mean(dim=(2, 3)))

    return ResNet()


def copy_to_torch(name, params, net):
    """Copies jaxcnn's ``params`` of ``name`` into ``torch_net(name)`` in place; returns ``net``."""
    _check(name)
    import torch  # pylint: disable=import-outside-toplevel

    def put(target, value):
        value = torch.from_numpy(np.array(value, np.float32, copy=True))
        assert tuple(target.shape) == tuple(value.shape), (tuple(target.shape), tuple(value.shape))
        with torch.no_grad():
            target.copy_(value)

    if name in SMALL:
        (w1, b1), (w2, b2), (w3, b3), (w4, b4) = unpack_small(params)
        side, _ = _flat_size(name)
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
        for module, (w, b) in zip(convs, ((w1, b1), (w2, b2))):
            put(module.weight, oihw(w)), put(module.bias, b)
        put(linears[0].weight, chw_rows(w3, side, SMALL[name][1]).T), put(linears[0].bias, b3)
        put(linears[1].weight, w4.T), put(linears[1].bias, b4)
        return net

    p = unpack_resnet(params)

    def conv_of(module):
        return module if isinstance(module, torch.nn.Conv2d) else module[1]

    def put_bn(module, scale_offset):
        put(module.weight, scale_offset[0]), put(module.bias, scale_offset[1])

    put(net.stem.weight, oihw(p["stem"])), put_bn(net.stem_bn, p["stem_bn"])
    for block, entry in zip(net.blocks, p["blocks"]):
        put(conv_of(block.conv1).weight, oihw(entry["conv1"])), put_bn(block.bn1, entry["bn1"])
        put(conv_of(block.conv2).weight, oihw(entry["conv2"])), put_bn(block.bn2, entry["bn2"])
        if "proj" in entry:
            put(block.shortcut[0].weight, oihw(entry["proj"])), put_bn(block.shortcut[1], entry["proj_bn"])
    put(net.dense.weight, p["dense"][0].T), put(net.dense.bias, p["dense"][1])
    return net


def torch_param_count(net) -> int:
    return sum(p.numel() for p in net.parameters())


# ---------------------------------------------------------------------- Flax NNX


def nnx_net(name, seed=0):
    """The Flax NNX module of ``name`` (``NHWC`` input ``(N, 28, 28, 1)``), in training mode."""
    _check(name)
    from flax import nnx  # pylint: disable=import-outside-toplevel

    rngs = nnx.Rngs(seed)
    if name in SMALL:
        c1, c2, hidden, pooled = SMALL[name]
        _, flat = _flat_size(name)

        class Small(nnx.Module):
            def __init__(self):
                self.conv1 = nnx.Conv(INPUT_SHAPE[-1], c1, (3, 3), padding="VALID", rngs=rngs)
                self.conv2 = nnx.Conv(c1, c2, (3, 3), padding="VALID", rngs=rngs)
                self.dense1 = nnx.Linear(flat, hidden, rngs=rngs)
                self.dense2 = nnx.Linear(hidden, NUM_CLASSES, rngs=rngs)

            def __call__(self, x):
                x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
                if pooled:
                    x = nnx.max_pool(x, (2, 2), strides=(2, 2))
                x = x.reshape(x.shape[0], -1)
                return self.dense2(nnx.relu(self.dense1(x)))

        return Small()

    def bn(channels):
        return nnx.BatchNorm(channels, momentum=BN_MOMENTUM, epsilon=BN_EPS, rngs=rngs)

    class Block(nnx.Module):
        def __init__(self, cin, cout, stride):
            self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, padding="SAME", use_bias=False, rngs=rngs)
            self.bn1 = bn(cout)
            self.conv2 = nnx.Conv(cout, cout, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
            self.bn2 = bn(cout)
            self.project = stride != 1 or cin != cout
            if self.project:
                self.proj = nnx.Conv(cin, cout, (1, 1), strides=stride, padding="VALID", use_bias=False, rngs=rngs)
                self.proj_bn = bn(cout)

        def __call__(self, x):
            y = nnx.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return nnx.relu(y + (self.proj_bn(self.proj(x)) if self.project else x))

    class ResNet(nnx.Module):
        def __init__(self):
            self.stem = nnx.Conv(INPUT_SHAPE[-1], RESNET_CHANNELS[0], (3, 3), padding="SAME", use_bias=False,
                                 rngs=rngs)
            self.stem_bn = bn(RESNET_CHANNELS[0])
            self.blocks = nnx.List([Block(*spec) for spec in resnet_plan()])
            self.dense = nnx.Linear(RESNET_CHANNELS[-1], NUM_CLASSES, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.stem_bn(self.stem(x)))
            for block in self.blocks:
                x = block(x)
            return self.dense(jnp.mean(x, axis=(1, 2)))

    return ResNet()


def copy_to_nnx(name, params, net):
    """Copies jaxcnn's ``params`` of ``name`` into ``nnx_net(name)`` in place; returns ``net``."""
    _check(name)

    def put(variable, value):
        assert tuple(variable.shape) == tuple(value.shape), (tuple(variable.shape), tuple(value.shape))
        if hasattr(variable, "set_value"):  # flax >= 0.12 (the .value setter is deprecated there)
            variable.set_value(jnp.asarray(value))
        else:
            variable.value = jnp.asarray(value)

    def put_bn(module, scale_offset):
        put(module.scale, scale_offset[0]), put(module.bias, scale_offset[1])

    if name in SMALL:
        layers = (net.conv1, net.conv2, net.dense1, net.dense2)
        for module, (w, b) in zip(layers, unpack_small(params)):
            put(module.kernel, w), put(module.bias, b)
        return net
    p = unpack_resnet(params)
    put(net.stem.kernel, p["stem"]), put_bn(net.stem_bn, p["stem_bn"])
    for block, entry in zip(net.blocks, p["blocks"]):
        put(block.conv1.kernel, entry["conv1"]), put_bn(block.bn1, entry["bn1"])
        put(block.conv2.kernel, entry["conv2"]), put_bn(block.bn2, entry["bn2"])
        if "proj" in entry:
            put(block.proj.kernel, entry["proj"]), put_bn(block.proj_bn, entry["proj_bn"])
    put(net.dense.kernel, p["dense"][0]), put(net.dense.bias, p["dense"][1])
    return net


def nnx_param_count(net) -> int:
    from flax import nnx  # pylint: disable=import-outside-toplevel

    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(nnx.state(net, nnx.Param)))


# ------------------------------------------------------------------------ Equinox


def equinox_net(name, seed=0):
    """``(module, state)``: the Equinox network of ``name`` and its ``eqx.nn.State`` (``None``
    for the stateless nets). The module maps ONE example ``(1, 28, 28)`` (``CHW``), as Equinox
    layers do; :func:`equinox_logits` vmaps it over the batch (axis name ``"batch"``, which the
    BatchNorms reduce over)."""
    _check(name)
    import equinox as eqx  # pylint: disable=import-outside-toplevel

    keys = iter(jax.random.split(jax.random.key(seed), 64))
    if name in SMALL:
        c1, c2, hidden, pooled = SMALL[name]
        _, flat = _flat_size(name)

        class Small(eqx.Module):
            conv1: eqx.nn.Conv2d
            conv2: eqx.nn.Conv2d
            pool: eqx.nn.MaxPool2d | None
            dense1: eqx.nn.Linear
            dense2: eqx.nn.Linear

            def __init__(self):
                self.conv1 = eqx.nn.Conv2d(INPUT_SHAPE[-1], c1, 3, key=next(keys))
                self.conv2 = eqx.nn.Conv2d(c1, c2, 3, key=next(keys))
                self.pool = eqx.nn.MaxPool2d(2, 2) if pooled else None
                self.dense1 = eqx.nn.Linear(flat, hidden, key=next(keys))
                self.dense2 = eqx.nn.Linear(hidden, NUM_CLASSES, key=next(keys))

            def __call__(self, x):
                x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
                if self.pool is not None:
                    x = self.pool(x)
                return self.dense2(jax.nn.relu(self.dense1(x.reshape(-1))))

        return Small(), None

    def bn(channels):
        return eqx.nn.BatchNorm(channels, axis_name="batch", eps=BN_EPS, momentum=BN_MOMENTUM, mode="batch")

    class Block(eqx.Module):
        conv1: eqx.nn.Conv2d
        bn1: eqx.nn.BatchNorm
        conv2: eqx.nn.Conv2d
        bn2: eqx.nn.BatchNorm
        proj: eqx.nn.Conv2d | None
        proj_bn: eqx.nn.BatchNorm | None

        def __init__(self, cin, cout, stride):
            self.conv1 = eqx.nn.Conv2d(cin, cout, 3, stride=stride, padding="SAME", use_bias=False, key=next(keys))
            self.bn1 = bn(cout)
            self.conv2 = eqx.nn.Conv2d(cout, cout, 3, padding="SAME", use_bias=False, key=next(keys))
            self.bn2 = bn(cout)
            if stride != 1 or cin != cout:
                self.proj = eqx.nn.Conv2d(cin, cout, 1, stride=stride, use_bias=False, key=next(keys))
                self.proj_bn = bn(cout)
            else:
                self.proj, self.proj_bn = None, None

        def __call__(self, x, state):
            y, state = self.bn1(self.conv1(x), state)
            y, state = self.bn2(self.conv2(jax.nn.relu(y)), state)
            if self.proj is not None:
                x, state = self.proj_bn(self.proj(x), state)
            return jax.nn.relu(y + x), state

    class ResNet(eqx.Module):
        stem: eqx.nn.Conv2d
        stem_bn: eqx.nn.BatchNorm
        blocks: tuple
        dense: eqx.nn.Linear

        def __init__(self):
            self.stem = eqx.nn.Conv2d(INPUT_SHAPE[-1], RESNET_CHANNELS[0], 3, padding="SAME", use_bias=False,
                                      key=next(keys))
            self.stem_bn = bn(RESNET_CHANNELS[0])
            self.blocks = tuple(Block(*spec) for spec in resnet_plan())
            self.dense = eqx.nn.Linear(RESNET_CHANNELS[-1], NUM_CLASSES, key=next(keys))

        def __call__(self, x, state):
            x, state = self.stem_bn(self.stem(x), state)
            x = jax.nn.relu(x)
            for block in self.blocks:
                x, state = block(x, state)
            return self.dense(jnp.mean(x, axis=(1, 2))), state

    return eqx.nn.make_with_state(ResNet)()


def equinox_logits(net, state, x_nchw):
    """Training-mode logits of an Equinox net on a ``(N, C, H, W)`` batch: ``(logits, new_state)``
    (``new_state`` is ``None`` for the stateless nets)."""
    if state is None:
        return jax.vmap(net)(x_nchw), None
    return jax.vmap(net, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(x_nchw, state)


def copy_to_equinox(name, params, net):
    """jaxcnn's ``params`` of ``name`` put into ``equinox_net(name)[0]``: returns the new module
    (Equinox modules are immutable; the state is unaffected)."""
    _check(name)
    import equinox as eqx  # pylint: disable=import-outside-toplevel

    pairs = []  # (getter, value)

    def add(getter, value):
        pairs.append((getter, jnp.asarray(value)))

    def add_bn(path, scale_offset):
        add(lambda m: path(m).weight, scale_offset[0]), add(lambda m: path(m).bias, scale_offset[1])

    if name in SMALL:
        (w1, b1), (w2, b2), (w3, b3), (w4, b4) = unpack_small(params)
        side, _ = _flat_size(name)
        # Equinox Conv2d bias is (out, 1, 1); Linear weight is (out, in)
        add(lambda m: m.conv1.weight, oihw(w1)), add(lambda m: m.conv1.bias, b1.reshape(-1, 1, 1))
        add(lambda m: m.conv2.weight, oihw(w2)), add(lambda m: m.conv2.bias, b2.reshape(-1, 1, 1))
        add(lambda m: m.dense1.weight, chw_rows(w3, side, SMALL[name][1]).T), add(lambda m: m.dense1.bias, b3)
        add(lambda m: m.dense2.weight, w4.T), add(lambda m: m.dense2.bias, b4)
    else:
        p = unpack_resnet(params)
        add(lambda m: m.stem.weight, oihw(p["stem"])), add_bn(lambda m: m.stem_bn, p["stem_bn"])
        for index, entry in enumerate(p["blocks"]):
            block = lambda m, i=index: m.blocks[i]  # noqa: E731
            add(lambda m, b=block: b(m).conv1.weight, oihw(entry["conv1"]))
            add_bn(lambda m, b=block: b(m).bn1, entry["bn1"])
            add(lambda m, b=block: b(m).conv2.weight, oihw(entry["conv2"]))
            add_bn(lambda m, b=block: b(m).bn2, entry["bn2"])
            if "proj" in entry:
                add(lambda m, b=block: b(m).proj.weight, oihw(entry["proj"]))
                add_bn(lambda m, b=block: b(m).proj_bn, entry["proj_bn"])
        add(lambda m: m.dense.weight, p["dense"][0].T), add(lambda m: m.dense.bias, p["dense"][1])
    for getter, value in pairs:
        assert getter(net).shape == value.shape, (getter(net).shape, value.shape)
    getters = [g for g, _ in pairs]
    return eqx.tree_at(lambda m: [g(m) for g in getters], net, [v for _, v in pairs])


def equinox_param_count(net) -> int:
    import equinox as eqx  # pylint: disable=import-outside-toplevel

    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array)))


# --------------------------------------------------------------------- one interface


def _materialize(tree, ones):
    """``tree`` with each ``jax.ShapeDtypeStruct`` leaf made an array: ones where ``ones(path)``,
    zeros elsewhere (NumPy, so no XLA program is compiled per shape)."""
    def fill(path, leaf):
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        return jnp.asarray((np.ones if ones(path) else np.zeros)(leaf.shape, leaf.dtype))

    return jax.tree_util.tree_map_with_path(fill, tree)


def _nnx_skeleton(name):
    """``nnx_net(name)`` without its random initialisation: built abstractly (``nnx.eval_shape``),
    every array zeros, BatchNorm's scale and running variance ones."""
    from flax import nnx  # pylint: disable=import-outside-toplevel

    graphdef, state = nnx.split(nnx.eval_shape(lambda: nnx_net(name)))
    names = lambda path: {getattr(k, "key", None) for k in path}  # noqa: E731
    return nnx.merge(graphdef, _materialize(state, lambda path: bool(names(path) & {"var", "scale"})))


def _equinox_skeleton(name):
    """``equinox_net(name)`` without its random initialisation: built abstractly
    (``eqx.filter_eval_shape``), every array zeros but the running variances (ones); the
    ``eqx.nn.State`` holds ``(batch counter, (mean, var))`` per BatchNorm."""
    import equinox as eqx  # pylint: disable=import-outside-toplevel

    net, state = eqx.filter_eval_shape(lambda: equinox_net(name))
    is_var = lambda path: bool(path) and getattr(path[-1], "idx", None) == 1  # noqa: E731
    return _materialize(net, lambda path: False), _materialize(state, is_var)


def build(framework, name, params):
    """The peer of ``name`` in ``framework`` (one of :data:`FRAMEWORKS`) holding jaxcnn's
    ``params``: a torch module, an NNX module, or an Equinox ``(module, state)``. BatchNorm's
    running statistics start as the frameworks start them (mean 0, variance 1).

    Every parameter is overwritten by the copy, so the JAX peers skip their own random
    initialisation (built abstractly, then filled): eagerly, it compiles one small program per
    parameter shape, seconds per network.
    """
    if framework == "torch":
        return copy_to_torch(name, params, torch_net(name))
    if framework == "nnx":
        return copy_to_nnx(name, params, _nnx_skeleton(name))
    if framework == "equinox":
        net, state = _equinox_skeleton(name)
        return copy_to_equinox(name, params, net), state
    raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")


def param_count(framework, peer) -> int:
    if framework == "torch":
        return torch_param_count(peer)
    if framework == "nnx":
        return nnx_param_count(peer)
    return equinox_param_count(peer[0])


def training_logits(framework, peer, x_nhwc) -> np.ndarray:
    """The peer's training-mode logits (BatchNorm on the batch's statistics) on ``(N, 28, 28, 1)``
    channels-last images, as NumPy."""
    x_nhwc = np.asarray(x_nhwc, np.float32)
    if framework == "torch":
        import torch  # pylint: disable=import-outside-toplevel

        peer.train()
        with torch.no_grad():
            return peer(torch.from_numpy(np.array(x_nhwc.transpose(0, 3, 1, 2), copy=True))).numpy()
    if framework == "nnx":
        from flax import nnx  # pylint: disable=import-outside-toplevel

        peer.train()
        return np.asarray(nnx.jit(lambda net, x: net(x))(peer, jnp.asarray(x_nhwc)))
    import equinox as eqx  # pylint: disable=import-outside-toplevel

    net, state = peer
    return np.asarray(eqx.filter_jit(equinox_logits)(net, state, jnp.asarray(x_nhwc.transpose(0, 3, 1, 2)))[0])


def jaxcnn_param_count(params) -> int:
    return sum(math.prod(jnp.shape(a)) for a in jax.tree.leaves(params))
