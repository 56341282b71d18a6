"""``python -m jaxcnn``: the ``jaxcnn`` command (see :mod:`jaxcnn.cli`)."""

from jaxcnn.training.process import configure_command  # isort: skip  (the standard library only)

configure_command()  # Ctrl-C handler and allocator setting, before jax is imported

from jaxcnn.cli import main  # noqa: E402  # pylint: disable=wrong-import-position

raise SystemExit(main())
