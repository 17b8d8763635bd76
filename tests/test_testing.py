"""The public fakes behave as the ports they stand in for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowctl.spec.config import load_bundle
from flowctl.testing import FrozenClock, write_config

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def test_a_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock(T0)
    assert clock.now() == clock.now() == T0
    assert clock.advance(90) == T0 + timedelta(seconds=90)
    clock.advance(timedelta(hours=1))
    assert clock.now() == T0 + timedelta(hours=1, seconds=90)
    clock.set(T0 - timedelta(hours=1))  # a wall clock stepped back
    assert clock.now() == T0 - timedelta(hours=1)


def test_a_frozen_clock_refuses_a_time_without_its_offset() -> None:
    with pytest.raises(ValueError, match="add tzinfo=UTC"):
        FrozenClock(datetime(2027, 3, 1, 9, 0))  # a naive time: the mistake under test


def test_write_config_makes_a_directory_that_loads(tmp_path: Path) -> None:
    root = write_config(tmp_path, {"objects/contact.yaml": """
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: contact}
        spec:
          fields:
            full_name: {type: string}
    """})
    loaded = load_bundle(root)
    assert loaded.ok, loaded.errors
    assert loaded.bundle is not None and "contact" in loaded.bundle.objects
