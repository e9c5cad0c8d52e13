"""Fixtures of the deploy unit tests (the recorded objects and the stand-in API: recorded.py)."""

from __future__ import annotations

import pytest
from recorded import RecordedApi


@pytest.fixture
def api() -> RecordedApi:
    """The client's API groups, answering what the test queues."""
    return RecordedApi()
