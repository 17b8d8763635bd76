"""``flowctl run`` serves the console at /ui/ on the API's address; ``--no-ui`` turns it off."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from flowctl.testing import Daemon, write_config

from .support import config


@pytest.mark.parametrize("args", [(), ("--no-ui",)])
def test_run_serves_the_console_unless_told_not_to(tmp_path: Path, args: tuple[str, ...]) -> None:
    write_config(tmp_path / "config", config(token=False))
    with Daemon(tmp_path / "config", f"sqlite:///{tmp_path / 'flowctl.db'}", args=args).start(timeout=60) as daemon:
        board = httpx.get(f"{daemon.url}/ui/boards/sales", timeout=10)
        assert daemon.get("/readyz").status_code == 200
        said = daemon.output()
    if args:
        assert board.status_code == 404 and "content-security-policy" not in board.headers
        assert "/ui/" not in said
    else:
        assert board.status_code == 200 and 'data-stage="new"' in board.text
        assert f"console on {daemon.url}/ui/" in said  # the start lines say where to open it
