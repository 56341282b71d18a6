"""Loaded by Python at the start of every process whose PYTHONPATH holds this folder (``site``):
arms :mod:`jaxcnn_observer`, which does nothing unless one of its environment variables is set."""

import jaxcnn_observer

jaxcnn_observer.arm()
