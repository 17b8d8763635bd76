"""The public fakes behave as the ports they stand in for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowctl.spec.config import load_bundle
from flowctl.testing import Daemon, FrozenClock, wait_for, write_config
from tests.daemon.configs import deal_config

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
    root = write_config(
        tmp_path,
        {
            "objects/contact.yaml": """
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: contact}
        spec:
          fields:
            full_name: {type: string}
    """
        },
    )
    loaded = load_bundle(root)
    assert loaded.ok, loaded.errors
    assert loaded.bundle is not None and "contact" in loaded.bundle.objects


def test_wait_for_returns_the_seconds_it_took_and_names_what_never_happened() -> None:
    calls = iter([False, False, True])
    assert 0 <= wait_for(lambda: next(calls), 5, "the third call", every=0.01) < 5

    with pytest.raises(AssertionError, match=r"^timed out after 0.05s waiting for the sky: still blue$"):
        wait_for(lambda: False, 0.05, "the sky", lambda: "still blue", every=0.01)


def test_a_daemon_starts_takes_writes_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = deal_config(spec='{timezone: UTC, api_token: "${API_TOKEN}"}')
    root = write_config(tmp_path / "config", {"flowctl.yaml": config})
    daemon = Daemon(root, f"sqlite:///{tmp_path / 'flowctl.db'}", env={"API_TOKEN": "t0ken"}, token="t0ken")
    with daemon.start(timeout=60):  # a loaded CI machine imports slowly
        assert daemon.ready() == 200
        assert daemon.put("deal", "7", {"title": "Sofa"}).status_code == 202
        wait_for(lambda: daemon.metric("flowctl_changes_processed_total") == 1, what="the change processed")
        assert daemon.get("/v1/records/deal/7").json()["fields"] == {"title": "Sofa"}
        assert daemon.terminate() == 0
        assert not daemon.alive() and daemon.ready() == 0
    assert "flowctl: stopped" in daemon.output()
