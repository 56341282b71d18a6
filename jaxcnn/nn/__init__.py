"""Layers (quadruples of pure functions), combinators, the named models and their summaries.

May import: ``jaxcnn.ops``.
"""
