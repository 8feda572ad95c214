"""Test-only: a bot process reads its catalogs from ``TEST_LOCALE_DIR``, loaded into it through PYTHONPATH.

tests/test_startup.py points a bot at a folder holding a broken catalog, to see it refuse to start.
Nothing of this is in the project's own code.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("TEST_LOCALE_DIR"):
    from common import i18n

    i18n.LOCALE_DIR = Path(os.environ["TEST_LOCALE_DIR"])
