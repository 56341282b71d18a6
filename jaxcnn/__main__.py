"""``python -m jaxcnn``: the ``jaxcnn`` command (see :mod:`jaxcnn.cli`)."""

from jaxcnn.cli import main

raise SystemExit(main())
