"""``FLOWCTL_TRACEMALLOC=FILE`` writes where the engine process's memory goes, every N seconds."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

from flowctl.runtime.daemon.memory_trace import start_from_env
from flowctl.testing import wait_for


def test_the_counters_and_the_largest_lines_are_written_until_stopped(tmp_path: Path) -> None:
    path = tmp_path / "engine.trace"
    stop = threading.Event()
    env = {"FLOWCTL_TRACEMALLOC": str(path), "FLOWCTL_TRACEMALLOC_SECONDS": "0.05", "FLOWCTL_TRACEMALLOC_LINES": "3"}
    thread = start_from_env(env, stop)
    try:
        assert thread is not None and tracemalloc.is_tracing()
        wait_for(lambda: path.exists() and "grew most" in path.read_text(), what="two samples")
    finally:
        stop.set()
        assert thread is not None
        thread.join(5)
        tracemalloc.stop()
    text = path.read_text()
    for counter in ("rss", "python blocks", "sqlite", "malloc in use", "free in arenas", "threads"):
        assert counter in text
    assert "largest by line" in text


def test_lines_0_writes_only_the_counters_and_traces_nothing(tmp_path: Path) -> None:
    path = tmp_path / "engine.trace"
    stop = threading.Event()
    env = {"FLOWCTL_TRACEMALLOC": str(path), "FLOWCTL_TRACEMALLOC_SECONDS": "0.05", "FLOWCTL_TRACEMALLOC_LINES": "0"}
    thread = start_from_env(env, stop)
    try:
        assert thread is not None and not tracemalloc.is_tracing()
        wait_for(lambda: path.exists() and path.read_text().count("==") >= 2, what="two samples")
    finally:
        stop.set()
        assert thread is not None
        thread.join(5)
    assert "largest by line" not in path.read_text()


def test_unset_starts_nothing() -> None:
    assert start_from_env({}, threading.Event()) is None
