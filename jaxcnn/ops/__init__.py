"""The math: each op (conv, pooling, dense, activations, losses, …) beside its hand-derived backward.

``padding`` is the one place that does shape arithmetic, ``hand_rule`` the one way to attach a hand
rule. May import: nothing of jaxcnn outside ``jaxcnn.ops``.
"""
