"""Run in a subprocess by tests/training/test_parallel.py, with several simulated CPU devices.

``python tests/training/multidevice_worker.py OUT.json`` (``XLA_FLAGS`` sets the device
count). For each gradient mode it runs the same compiled epoch chunk on a mesh
of every device and on a mesh of the first device only, from the same state on
the same data, and writes the largest relative parameter difference per mode
(``max|a - b| / max|a|`` over each leaf), whether the many-device program
all-reduces (XLA inserted the gradient sum), the device count and the losses.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from jaxcnn.training import data
from jaxcnn.proof import gradients
from jaxcnn.nn import models
from jaxcnn.training import parallel
from jaxcnn.training import steps

BATCH, STEPS = 12, 3  # 12 examples over 8 devices: an uneven split, which XLA pads


def run_chunk(mesh, model, params, images, labels, grad):
    tx = optax.sgd(0.02, momentum=0.9)
    chunk = steps.make_train_chunk(model, tx, grad=grad, augment="none", batch_size=BATCH,
                                   steps_per_epoch=STEPS, chunk=STEPS, mesh=mesh)
    state = parallel.put_replicated((params, tx.init(params), images, labels), mesh)
    key, index = parallel.put_replicated((jax.random.key_data(jax.random.key(1)), np.int32(0)), mesh)
    key = jax.random.wrap_key_data(key)
    hlo = chunk.lower(*state, key, index).compile().as_text()
    params, _, losses, *_ = chunk(*state, key, index)
    return parallel.to_host(params), parallel.to_host(losses), "all-reduce" in hlo


def relative(a, b) -> float:
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(out: str) -> None:
    images, labels = data.load("mnist-sample", "train")
    keep = np.random.default_rng(0).permutation(len(labels))[: BATCH * STEPS]  # the file is sorted by label
    images, labels = images[keep], labels[keep]
    model = models.get_model("classic", num_classes=10)
    params = parallel.to_host(jax.jit(lambda k: model.init(k, (-1, 28, 28, 1))[1])(jax.random.key(0)))
    every, one = parallel.data_mesh(), Mesh(np.asarray(jax.devices()[:1]), (parallel.DATA_AXIS,))
    result = {"devices": every.devices.size, "modes": {}}
    for grad in gradients.MODES:
        many, losses_many, reduced = run_chunk(every, model, params, images, labels, grad)
        single, losses_single, _ = run_chunk(one, model, params, images, labels, grad)
        result["modes"][grad] = {"relative": relative(single, many), "all_reduce": reduced,
                                 "losses": [losses_single.tolist(), losses_many.tolist()]}
    with open(out, "w", encoding="utf-8") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1])
