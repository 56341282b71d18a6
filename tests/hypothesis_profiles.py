"""The example budget of the property tests, importable from any test module.

``examples(n)`` is the ``@settings`` of a property that wants ``n`` examples in the default
``ci`` profile; the ``thorough`` profile (``JAXCNN_HYPOTHESIS=thorough``) multiplies it by
``THOROUGH_FACTOR``.
"""

import os

from hypothesis import settings

PROFILES = ("ci", "thorough")
PROFILE = os.environ.get("JAXCNN_HYPOTHESIS", "ci")
if PROFILE not in PROFILES:
    raise ValueError(f"JAXCNN_HYPOTHESIS must be one of {PROFILES}, got {PROFILE!r}")

CI_EXAMPLES = 5
THOROUGH_FACTOR = 10


def examples(n: int) -> settings:
    """``settings(max_examples=...)``: ``n`` in the ``ci`` profile, ``n * THOROUGH_FACTOR`` in ``thorough``."""
    return settings(max_examples=n * (THOROUGH_FACTOR if PROFILE == "thorough" else 1))
