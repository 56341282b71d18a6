"""The proof floor: the three gradient modes, the mode comparison, the checker for users' hand rules.

May import: ``jaxcnn.nn`` and ``jaxcnn.ops``.
"""
