"""Minimal shared test setup."""

import sys
from pathlib import Path

# tests/browser_helpers.py is imported as a plain module, also under --import-mode=importlib.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
