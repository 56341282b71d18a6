"""Optimizers and learning-rate schedules for training, from optax.

``config`` below is a :class:`jaxcnn.training.loop.TrainConfig` (fields ``optimizer``,
``lr``, ``schedule``, ``weight_decay``, ``epochs``) whose ``lr`` is filled in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
DEFAULT_LR = {"sgd": 0.05, "momentum": 0.05, "adam": 1e-3, "adamw": 3e-3}
MOMENTUM = 0.9


def make_schedule(config, steps_per_epoch: int):
    """The learning rate as a function of the step.

    ``constant``: ``lr``. ``cosine``: linear warm-up from 0 over the first epoch,
    then cosine decay to 0 at the last step. ``onecycle``: cosine rise from
    lr/25 to lr over the first 30% of steps, then cosine decay to lr/25e4.
    """
    total = config.epochs * steps_per_epoch
    if config.schedule == "constant":
        return optax.constant_schedule(config.lr)
    if config.schedule == "cosine":
        warmup = min(steps_per_epoch, total // 2)
        return optax.warmup_cosine_decay_schedule(0.0, config.lr, warmup, total, end_value=0.0)
    return optax.cosine_onecycle_schedule(total, config.lr, pct_start=0.3, div_factor=25.0,
                                          final_div_factor=1e4)


def _kernels_only(params):
    return jax.tree.map(lambda leaf: jnp.ndim(leaf) > 1, params)


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimizer of ``config``.

    ``sgd`` is the plain rule :math:`\\theta \\leftarrow \\theta - \\eta \\, \\partial L / \\partial \\theta`;
    ``momentum`` adds heavy-ball momentum 0.9; ``adamw`` is Adam with decoupled
    weight decay on the kernels.
    """
    schedule = make_schedule(config, steps_per_epoch)
    if config.optimizer == "sgd":
        return optax.sgd(schedule)
    if config.optimizer == "momentum":
        return optax.sgd(schedule, momentum=MOMENTUM)
    if config.optimizer == "adam":
        return optax.adam(schedule)
    return optax.adamw(schedule, weight_decay=config.weight_decay, mask=_kernels_only)
