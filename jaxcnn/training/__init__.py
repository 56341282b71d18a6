"""From data to checkpoints: data sets, augmentation, optimisers, compiled steps, the train loop,
checkpoints, data parallelism, plots and the benchmark helpers.

May import: every other floor (``ops``, ``nn``, ``proof``); nothing imports it but the CLI and the top.
"""
