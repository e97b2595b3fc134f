"""Networking tests: markers."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "load: a heavy networking load test (deselect with -m 'not load')")
