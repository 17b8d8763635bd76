"""Public fakes for the ports, for flowctl's own tests and for anyone who embeds flowctl.

Each stands in for a real adapter that does I/O, and behaves as the port's contract says:

- ``FrozenClock``: a ``Clock`` that moves only when told to, and may be shared with a daemon's threads.
- ``MemoryStore``: the ``Store`` in memory. It passes the same contract suite as SQLite and PostgreSQL.
- ``RecordingSender``: a channel ``Sender`` that accepts every message and remembers it.
- ``write_config``: a configuration directory from a mapping of relative paths to YAML texts.
- ``Daemon``: a real ``flowctl run`` in a child process, on a config directory and a database URL,
  that a test starts, writes to, waits on, stops with SIGTERM or kills with SIGKILL, and starts again.
  ``wait_for`` polls a condition with a deadline; ``free_port`` finds a loopback port to listen on.

Example::

    clock = FrozenClock(datetime(2027, 3, 1, 9, tzinfo=UTC))
    worker = Worker(MemoryStore(), Engines(Engine(bundle)), clock)
    clock.advance(timedelta(days=1))

    with Daemon(write_config(tmp_path / "config", files), f"sqlite:///{tmp_path / 'flowctl.db'}") as daemon:
        assert daemon.put("deal", "7", {"title": "Sofa"}).status_code == 202
        wait_for(lambda: daemon.metric("flowctl_changes_processed_total") == 1, what="the change processed")

The daemon runs through the CLI in its own process, so this module imports nothing of
``flowctl.runtime``: the harness exercises what an operator runs, signals and all.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from flowctl.channels.base import Receipt
from flowctl.ports import OutboxRow
from flowctl.store.memory import MemoryStore

__all__ = [
    "Daemon",
    "FrozenClock",
    "MemoryStore",
    "RecordingSender",
    "children",
    "free_port",
    "gone",
    "wait_for",
    "write_config",
]


class FrozenClock:
    """A ``Clock`` that stays at the time a test sets; ``set`` and ``advance`` move it (thread-safe)."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        """Jump to ``at``, forward or back (as a stepped wall clock would)."""
        at = _aware(at)
        with self._lock:
            self._at = at

    def advance(self, by: timedelta | float) -> datetime:
        """Move forward by ``by`` (a timedelta, or seconds); returns the new time."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        with self._lock:
            self._at += step
            return self._at


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"FrozenClock needs a time with its offset, got {at.isoformat()} (add tzinfo=UTC)")
    return at


class RecordingSender:
    """A channel ``Sender`` that accepts every message and keeps it in ``sent``, in the order sent."""

    concurrency = 1

    def __init__(self) -> None:
        self.sent: list[OutboxRow] = []
        self._lock = threading.Lock()

    def send(self, row: OutboxRow) -> Receipt:
        with self._lock:
            self.sent.append(row)
        return Receipt(detail="recorded")


def write_config(directory: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` (relative path → YAML text, dedented) under ``directory`` and return it."""
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return directory


# --- the daemon in a child process ------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port that nothing listens on now (the OS picks it; a race is unlikely)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], object],
    timeout: float = 20.0,
    what: str = "condition",
    detail: Callable[[], object] | None = None,
    *,
    every: float = 0.05,
) -> float:
    """Poll ``condition`` every ``every`` seconds until it is truthy; return the seconds it took.

    Fails with an ``AssertionError`` naming ``what`` (and ``detail()``, what was seen instead) after
    ``timeout`` seconds, so a test that waits on a daemon says what never happened.
    """
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic() - start
        time.sleep(every)
    seen = f": {detail()}" if detail is not None else ""
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{seen}")


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (Linux ``/proc``); none once ``pid`` is gone."""
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited: no such process, or a zombie its dead parent left unreaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    return False


class Daemon:
    """``flowctl run CONFIG --db DATABASE`` as a child process on a free loopback port.

    ``start`` returns once ``/readyz`` answers 200 (or raises with the log if the process exits or
    is not ready in time); ``terminate`` sends SIGTERM and returns the exit code, ``kill`` sends
    SIGKILL; ``start`` again restarts it on the same port, database and log. Everything the process
    writes goes to ``log`` (``output()``), which survives restarts, so a test can assert on what
    the daemon logged (with ``split_stdout``, ``output()`` is stderr only and ``stdout()`` the rest:
    the ``log`` channel's lines). ``token`` is sent as a bearer token on the requests made through the helper
    methods (``put``, ``patch``, ``get``, ``metric``); ``env`` adds to this process's environment,
    with a short retry base (0.2 s) so that retries happen within a test's patience.

    Used as a context manager, the daemon is started on entry (unless it runs already: ``with
    daemon.start(timeout=60):``) and killed on exit if still alive.
    """

    def __init__(
        self,
        config: Path,
        database: str,
        *,
        env: Mapping[str, str] | None = None,
        args: tuple[str, ...] = (),
        token: str | None = None,
        split_stdout: bool = False,
    ) -> None:
        self.config = config
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.env = {**os.environ, "FLOWCTL_RETRY_BASE": "0.2", **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / f"daemon-{self.port}.log"
        self.stdout_log = config.parent / f"daemon-{self.port}.out" if split_stdout else None
        self.starts = 0

    # --- the process

    def start(self, timeout: float = 20.0) -> Daemon:
        """Start the process and wait until ``/readyz`` answers 200."""
        self.starts += 1
        with contextlib.ExitStack() as files:  # the child keeps its own copies of the descriptors
            err = files.enter_context(self.log.open("ab"))
            out = files.enter_context(self.stdout_log.open("ab")) if self.stdout_log else err
            where = ["--db", self.database, "--listen", f"127.0.0.1:{self.port}"]
            command = [sys.executable, "-m", "flowctl", "run", str(self.config), *where]
            self.proc = subprocess.Popen([*command, *self.args], stdout=out, stderr=err, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        self.kill()  # a daemon that never got ready must not outlive the test that gives up on it
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        """Everything the daemon logged, over all its starts."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stdout(self) -> str:
        """What the daemon printed on stdout (with ``split_stdout``; else it is in ``output()``)."""
        path = self.stdout_log
        return path.read_text(errors="replace") if path is not None and path.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        self.send_signal(signal.SIGTERM)
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to finish anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the daemon (SIGHUP reloads its configuration)."""
        assert self.proc is not None, "the daemon was never started"
        self.proc.send_signal(signum)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop_quietly(self) -> None:
        """Kill the daemon if it still runs (for a test's ``finally``)."""
        if self.alive():
            self.kill()

    def __enter__(self) -> Daemon:
        return self if self.alive() else self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop_quietly()

    def engine_pid_or_none(self) -> int | None:
        """The daemon's engine process (Linux), or None while there is none (exited, not yet restarted)."""
        assert self.proc is not None
        engines = []
        for pid in children(self.proc.pid):
            with contextlib.suppress(OSError):  # it may be gone between the two reads
                if b"engine_child" in Path(f"/proc/{pid}/cmdline").read_bytes() and not gone(pid):
                    engines.append(pid)
        assert len(engines) <= 1, engines
        return engines[0] if engines else None

    def engine_pid(self) -> int:
        """The daemon's engine process; fails, with the end of the log, when there is none."""
        found = self.engine_pid_or_none()
        assert found is not None, self.output()[-3000:]
        return found

    # --- the HTTP API

    def headers(self) -> dict[str, str]:
        """The bearer token's header, when the daemon was given one."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, timeout: float = 10.0) -> httpx.Response:
        """GET ``path`` (``/readyz``, ``/v1/records/deal/7``) from the daemon."""
        return httpx.get(f"{self.url}{path}", headers=self.headers(), timeout=timeout)

    def delete(self, object: str, id: str) -> httpx.Response:
        """Delete a record (to the recycle bin): ``DELETE /v1/records/{object}/{id}``."""
        return httpx.delete(f"{self.url}/v1/records/{object}/{id}", headers=self.headers(), timeout=30)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> httpx.Response:
        """POST ``body`` as JSON to ``path`` (``/v1/records/deal/7/stage``, ``…/restore``)."""
        return httpx.post(f"{self.url}{path}", json=body, headers=self.headers(), timeout=30)

    def put(
        self, object: str, id: str, fields: Mapping[str, Any], *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> httpx.Response:
        """Write a record whole: ``PUT /v1/records/{object}/{id}`` with ``fields`` and ``extra`` (``stage``)
        in the body and ``headers`` (``Idempotency-Key``, ``Prefer``) besides the token's."""
        return self._write("PUT", object, id, {"fields": fields, **extra}, headers)

    def patch(
        self, object: str, id: str, fields: Mapping[str, Any], *, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> httpx.Response:
        """Change some fields of a record: ``PATCH /v1/records/{object}/{id}``."""
        return self._write("PATCH", object, id, {"fields": fields, **extra}, headers)

    def _write(
        self, method: str, object: str, id: str, body: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> httpx.Response:
        url = f"{self.url}/v1/records/{object}/{id}"
        return httpx.request(method, url, json=body, headers={**self.headers(), **(headers or {})}, timeout=30)

    def ready(self) -> int:
        """The status ``/readyz`` answers, 0 when the daemon does not answer at all."""
        with contextlib.suppress(httpx.HTTPError):
            return self.get("/readyz").status_code
        return 0

    def metric(self, name: str, missing: float | None = None) -> float:
        """The value of the first sample of ``name`` on ``/metrics`` (labels or none).

        When there is none yet, ``missing`` is returned, or without it the test fails with the page.
        """
        text = self.get("/metrics").text
        found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.MULTILINE)
        if found:
            return float(found.group(1))
        assert missing is not None, text
        return missing
