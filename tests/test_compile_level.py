"""The suite's XLA optimisation level proves what users' programs compute.

The default profile compiles at ``--xla_backend_optimization_level=0`` (``tests/conftest.py``); users'
programs compile at XLA's default level. Here a fresh process at the default level computes a
model's loss and gradients in the three modes in float64, and they agree with each other and with
this process's (level 0) to the float64 proofs' 1e-10. (The two levels' float32 results differ in
their last bits (measured on the random initial params: 1.2e-7), so a float32 comparison between
processes at different levels needs a float32 tolerance; the suite makes none.)
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from oracles import assert_close
from jaxcnn.nn import models
from jaxcnn.proof.gradients import MODES, loss_and_grad

CHILD = """
import json, sys
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[1])
from test_compile_level import gradients
print(json.dumps({"flags": __import__("os").environ.get("XLA_FLAGS", ""), "grads": gradients()}))
"""


def gradients() -> dict:
    """ResNet (one block per stage: conv, BatchNorm, ReLU, residual sums, global pooling, dense) in float64:
    ``{mode: [loss, *every gradient entry]}`` for the three modes, each under ``jit``."""
    model = models.resnet(blocks_per_stage=1)
    _, params, state = model.init_with_state(jax.random.PRNGKey(0), (-1, 12, 12, 1))
    # the operands come from NumPy: jax.random's draws are compiled programs too, and their float32 results
    # differ in the last bit between optimisation levels (the machine code rounds differently); the
    # BatchNorm scales and running variances (ones at init, exactly) stay centred on one
    rng = np.random.default_rng(0)
    centre = lambda a: 1.0 if a.size and bool(jnp.all(a == 1)) else 0.0
    params, state = jax.tree_util.tree_map(
        lambda a: jnp.asarray(centre(a) + 0.3 * rng.standard_normal(a.shape), jnp.float64), (params, state))
    x = jnp.asarray(rng.standard_normal((4, 12, 12, 1)), jnp.float64)
    labels = jnp.array([0, 4, 2, 9])
    run = jax.jit(lambda p: {mode: loss_and_grad(model, p, x, labels, grad=mode, state=state)[:2] for mode in MODES})
    return {mode: np.concatenate([np.ravel(loss), *map(np.ravel, jax.tree_util.tree_leaves(grads))]).tolist()
            for mode, (loss, grads) in run(params).items()}


@pytest.mark.slow  # a second process that compiles at the default level
def test_the_default_optimisation_level_computes_what_the_suites_level_computes(x64):
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_backend_optimization_level" not in f)
    env = dict(os.environ, XLA_FLAGS=flags)
    done = subprocess.run([sys.executable, "-c", CHILD, os.path.dirname(__file__)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout.strip().splitlines()[-1])
    assert "xla_backend_optimization_level" not in child["flags"]
    here = gradients()
    for mode in MODES:
        default_level = np.array(child["grads"][mode])
        assert_close(default_level, np.array(child["grads"]["autodiff"]), rtol=1e-10,
                     err_msg=f"{mode} at the default level")
        assert_close(default_level, np.array(here[mode]), rtol=1e-10,
                     err_msg=f"{mode}: the default level against this process's")
