"""``impl="auto"`` as data: an ordered table of rules, each a condition on the layer and the pass.

The first rule whose condition holds names the impl. Conditions read only static shapes,
the normalised config, the operands' dtype, the platform and the pass, so the choice is fixed
at trace time, once per compilation; every impl computes the same convolution, so only speed
depends on it. Why each rule is there, and the measurements behind it, are in BENCHMARKS.md
("Conv impls", "The hybrid impl", "One forward per step", "ResNet's convolutions",
"Winograd in the hand rule", "oneDNN's convolution passes").
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Callable, NamedTuple, Tuple, Union

import jax
import jax.numpy as jnp

from jaxcnn.ops import onednn as onednn_lib
from jaxcnn.ops.convolution.config import ConvConfig, is_forward_only, output_spatial
from jaxcnn.ops.convolution.registry import REGISTRY, Impl

#: ``auto`` leaves im2col when its patch matrix would exceed this many elements (1 GiB of float32).
MAX_PATCH_ELEMENTS = 2**28
CONCRETE_IMPLS = tuple(REGISTRY)
IMPLS = (*CONCRETE_IMPLS, "auto")  #: what ``impl=`` takes by name


class Case(NamedTuple):
    """What a rule may look at: one convolution and the pass it is traced for.

    Attributes:
      batch, out_spatial, window, in_channels: the layer's shapes.
      config: its normalised arguments.
      platform: ``"cpu"``, ``"gpu"``, ``"tpu"``, ...
      dtype: the operands' dtype by name, ``"float32"``, ``"float64"``, ... (names joined by ``"/"``
        where they differ: :func:`~jaxcnn.ops.convolution.config.operands_dtype`).
      manual: traced for the hand rule (``grad="manual"``, ``conv_forward``/``conv_backward``).
      forward_only: traced for a forward that is not differentiated (:func:`~jaxcnn.ops.convolution.forward_only`).
    """

    batch: int
    out_spatial: Tuple[int, ...]
    window: Tuple[int, ...]
    in_channels: int
    config: ConvConfig
    platform: str
    dtype: str
    manual: bool = False
    forward_only: bool = False

    @classmethod
    def of(cls, x_shape, w_shape, config: ConvConfig, platform: str, dtype: str, **passes) -> "Case":
        """The case of a convolution of an ``x_shape`` input with a ``w_shape`` kernel, operands of ``dtype``."""
        window = tuple(w_shape[:-2])
        return cls(x_shape[0], output_spatial(x_shape, window, config), window, x_shape[-1], config, platform,
                   dtype, **passes)

    @property
    def rank(self) -> int:
        return len(self.window)

    @property
    def patch_elements(self) -> int:
        """Elements of im2col's patch matrix, ``N·∏out·∏f·C_in``."""
        return self.batch * math.prod(self.out_spatial) * math.prod(self.window) * self.in_channels

    @property
    def depthwise(self) -> bool:
        return 1 < self.config.groups == self.in_channels

    @property
    def padded_unit_2d(self) -> bool:
        """A padded 2-D convolution with stride 1 and dilation 1 (ResNet's 3×3 ``SAME``)."""
        return (self.rank == 2 and any(lo or hi for lo, hi in self.config.pairs)
                and all(s == 1 for s in self.config.stride) and all(d == 1 for d in self.config.dilation))


@dataclasses.dataclass(frozen=True)
class Rule:
    """``impl`` (a name in :data:`~jaxcnn.ops.convolution.REGISTRY`, or an :class:`Impl`) where ``when(case)`` holds."""

    impl: Union[str, Impl]
    when: Callable[[Case], bool]
    why: str

    def __post_init__(self):
        if not isinstance(self.impl, Impl) and self.impl not in REGISTRY:
            raise ValueError(f"Rule impl must be one of {tuple(REGISTRY)} or an Impl, got {self.impl!r}")


@dataclasses.dataclass(frozen=True)
class Policy:
    """An ordered table of :class:`Rule` s; the first that holds picks the impl, the last must always hold."""

    rules: Tuple[Rule, ...]

    def with_rules(self, *rules: Rule) -> "Policy":
        """This policy with ``rules`` tried just before its last (catch-all) rule."""
        return Policy((*self.rules[:-1], *rules, self.rules[-1]))

    def with_impl(self, name: str, impl: Impl) -> "Policy":
        """This policy with ``impl`` wherever a rule names ``name`` (a variant of one impl, say)."""
        return Policy(tuple(dataclasses.replace(rule, impl=impl) if rule.impl == name else rule
                            for rule in self.rules))

    def pick(self, case: Case) -> Impl:
        """The impl of the first rule that holds for ``case``."""
        for rule in self.rules:
            if rule.when(case):
                return rule.impl if isinstance(rule.impl, Impl) else REGISTRY[rule.impl]
        raise ValueError(f"no rule of the conv policy holds for {case}; end the table with a catch-all rule")


def _always(case: Case) -> bool:
    return True


OFF_CPU = Rule("lax", lambda c: c.platform != "cpu",
               "off the CPU, XLA's convolution runs on cuDNN or the TPU's convolution units (not measured)")
TOO_LARGE = Rule("lax", lambda c: c.patch_elements > MAX_PATCH_ELEMENTS,
                 "im2col would materialise a patch matrix larger than MAX_PATCH_ELEMENTS")
DEPTHWISE = Rule("lax", lambda c: c.depthwise, "depthwise: im2col and XLA tie")


def _onednn_runs(case: Case) -> bool:
    """float32 on the CPU, with oneDNN's extension built and loaded (checked once per process)."""
    return case.platform == "cpu" and case.dtype == "float32" and onednn_lib.available()


ONEDNN = Rule("onednn", _onednn_runs,
              "float32 on the CPU: oneDNN's forward, input-gradient and kernel-gradient primitives (PyTorch's CPU "
              "convolutions) are the fastest impl in every pass measured on the named nets' layers, under jax.grad, "
              "in the hand rule and for a forward alone; without the native extension (no compiler, no oneDNN "
              "wheel, not x86-64 Linux) the rules after it decide")

#: The default ``impl="auto"`` of :func:`~jaxcnn.ops.convolution.conv`: the first rule that holds picks the impl
#: (each rule's ``why`` says why in words; the measurements are in BENCHMARKS.md, see the module docstring).
#: float32 on the CPU runs on oneDNN wherever :func:`jaxcnn.ops.onednn.available` (depthwise layers excepted:
#: not measured there); float64, other dtypes and float32 without the extension follow the rules after it.
#: :data:`TOO_LARGE` guards im2col's patch matrix, which oneDNN does not build, so it comes after oneDNN.
AUTO = Policy((
    OFF_CPU,
    DEPTHWISE,
    ONEDNN,
    TOO_LARGE,
    Rule("lax", lambda c: c.forward_only and c.padded_unit_2d and 8 <= c.in_channels <= 32,
         "a padded forward alone: XLA:CPU's fast path for padded convolutions beats im2col up to 32 channels"),
    Rule("hybrid", lambda c: c.manual and c.padded_unit_2d and 8 <= c.in_channels <= 16,
         "the hand rule of a padded 2-D layer: XLA's forward and input gradient, im2col's kernel gradient"),
    Rule("explicit", _always,
         "every other case: XLA:CPU's convolutions, above all their gradients, are slower than im2col's GEMMs"),
))

#: ``auto`` of :func:`~jaxcnn.ops.transposed_conv.conv_transpose`, whose passes are conv's in another order
#: (its forward is conv's input gradient): oneDNN for float32 on the CPU where available, as for conv (on the
#: autoencoder's two upsampling layers oneDNN's forward + VJP is 1.4–3.0× faster than im2col's in both
#: modes, BENCHMARKS.md "oneDNN's convolution passes"), then conv's guards, then im2col.
TRANSPOSE_AUTO = Policy((OFF_CPU, DEPTHWISE, ONEDNN, TOO_LARGE, Rule("explicit", _always, "as for conv")))


def winograd_rule(min_channels: int) -> Rule:
    """The hand rule's Winograd row, for :meth:`Policy.with_rules` (not in :data:`AUTO`).

    Under ``grad="manual"``, a 2-D 3×3 stride-1 undilated ungrouped convolution with at least
    ``min_channels`` input channels runs Winograd's F(4×4, 3×3). It is faster, and it stays out
    of :data:`AUTO` because the modes would then run different forwards, which differ where
    the network is not differentiable: in float32 its rounding reorders near-ties of a max
    pool that follows (docs/performance.md "Why Winograd is off by default").
    :meth:`Policy.with_rules` puts it after :data:`ONEDNN`, so in float32 on the CPU it decides
    only where oneDNN is not available.
    """
    def holds(c: Case) -> bool:
        return (c.manual and not c.forward_only and c.rank == 2 and c.window == (3, 3) and c.config.groups == 1
                and all(s == 1 for s in c.config.stride) and all(d == 1 for d in c.config.dilation)
                and c.in_channels >= min_channels)

    return Rule("winograd", holds, f"the hand rule of a 3×3 layer with >= {min_channels} input channels")


_POLICY = contextvars.ContextVar("jaxcnn_conv_policy", default=AUTO)


@contextlib.contextmanager
def use_policy(policy: Policy):
    """Within this context ``impl="auto"`` of :func:`~jaxcnn.ops.convolution.conv` follows ``policy``.

    Like :func:`~jaxcnn.ops.convolution.forward_only`, it acts at trace time: enter it inside the
    function that ``jax.jit`` traces, or around its first trace (or ``lower``); a function
    ``jit`` has traced already runs its cached program under any policy. For a whole model
    whose layers say ``impl="auto"``; a single call can pass the policy as ``impl=`` instead.
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a jaxcnn.ops.convolution.Policy, got {policy!r}")
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def check_impl(impl):
    """Validates an ``impl`` argument: a name of :data:`IMPLS`, an :class:`Impl` or a :class:`Policy`."""
    if isinstance(impl, (Impl, Policy)) or (isinstance(impl, str) and impl in IMPLS):
        return impl
    raise ValueError(f"impl must be one of {IMPLS}, got {impl!r} (an Impl or a Policy is accepted too)")


def pick(impl, case_of: Callable[..., Case], *, forward_only=None, manual=False, auto=None) -> Impl:
    """The :class:`Impl` behind ``impl`` (a name, an :class:`Impl` or a :class:`Policy`).

    ``case_of(manual=..., forward_only=...)`` builds the :class:`Case`, only when a policy
    decides; ``"auto"`` is ``auto`` or else the context's policy (:func:`use_policy`).
    """
    if isinstance(check_impl(impl), Impl):
        return impl
    if isinstance(impl, str) and impl != "auto":
        return REGISTRY[impl]
    policy = impl if isinstance(impl, Policy) else auto or _POLICY.get()
    forward_only = is_forward_only() if forward_only is None else forward_only
    return policy.pick(case_of(manual=manual, forward_only=forward_only))


def default_dtype() -> str:
    """The name of the dtype of a floating-point array made without one: ``"float32"``, or
    ``"float64"`` under ``jax_enable_x64``."""
    return str(jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64)))


def resolve_impl(impl, x_shape, w_shape, config: ConvConfig, platform: str, *, dtype=None, forward_only=None,
                 manual: bool = False) -> str:
    """The name of the impl ``impl`` stands for (``"auto"`` and a :class:`Policy` decide here, at trace time).

    Args:
      impl: a name of :data:`~jaxcnn.ops.convolution.IMPLS`, an :class:`Impl` or a :class:`Policy`.
      x_shape, w_shape: the operands' shapes; config: from :func:`~jaxcnn.ops.convolution.conv_config`.
      platform: e.g. ``"cpu"``.
      dtype: the operands' dtype (a name or a dtype); ``None`` = :func:`default_dtype`, that of
        arrays made without one.
      forward_only: resolve for an undifferentiated forward; ``None`` = whether the caller
        is inside :func:`~jaxcnn.ops.convolution.forward_only`.
      manual: resolve for the hand rule (``grad="manual"``, :func:`~jaxcnn.ops.convolution.conv_backward`).
    """
    dtype = default_dtype() if dtype is None else str(jnp.dtype(dtype))
    case_of = lambda **passes: Case.of(x_shape, w_shape, config, platform, dtype, **passes)
    return pick(impl, case_of, forward_only=forward_only, manual=manual).name
