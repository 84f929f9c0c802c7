"""Fixtures for the container tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from container_helpers import make_series


@pytest.fixture
def series(tmp_path: Path) -> list[Path]:
    return make_series(tmp_path)
