"""Request heads that never end, against the real daemon (``flowctl run`` in a subprocess).

Issue 20: eight connections sending 64 MiB of unfinished headers took the daemon from 81 to
755 MiB, and 440 MiB stayed after they closed: uvicorn with httptools has no header limit and
nothing is read before authentication but the head. The daemon now refuses a head over
``MAX_HEAD_BYTES`` or with more than ``MAX_HEADERS`` fields with 431 and closes the connection.
Memory is read from /proc (the high-water mark ``VmHWM``), so nothing depends on speed.
"""

from __future__ import annotations

import http.client
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowctl.runtime.api.heads import MAX_HEAD_BYTES, MAX_HEADERS
from flowctl.testing import Daemon, write_config
from tests.daemon.configs import deal_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads memory from /proc (Linux)")

MiB = 1024 * 1024
CONNECTIONS = 8
SEND_AT_MOST = 32 * MiB  # per connection: 256 MiB in all would sit in the daemon without the limit
GROWTH_BOUND = 100 * MiB
CONFIG = deal_config(name="heads", spec='{timezone: UTC, api_token: "${API_TOKEN}"}')
TOKEN = "heads-token-5b1c"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    tmp_path = tmp_path_factory.mktemp("heads")
    folder = write_config(tmp_path / "config", {"flowctl.yaml": CONFIG})
    proc = Daemon(folder, f"sqlite:///{tmp_path / 'flowctl.db'}", env={"API_TOKEN": TOKEN}, token=TOKEN)
    try:
        yield proc.start()
    finally:
        proc.stop_quietly()


def memory(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (the most ever resident) of ``pid``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@dataclass
class Flood:
    """One connection sending a head that does not end: how much went out, what came back."""

    sent: int = 0
    answer: bytes = b""
    error: str = ""


def flood(port: int, line: bytes, out: Flood) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(b"POST /v1/events HTTP/1.1\r\nHost: flowctl\r\n")
            while out.sent < SEND_AT_MOST:
                sock.sendall(line)
                out.sent += len(line)
        except OSError as exc:  # the daemon closed the connection: what it answered is still readable
            out.error = type(exc).__name__
        try:
            while chunk := sock.recv(65536):
                out.answer += chunk
        except OSError as exc:
            out.error = out.error or type(exc).__name__


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                    break
        except OSError:
            pass
        return answer


def test_endless_heads_are_cut_off_and_memory_stays_bounded(daemon: Daemon, figures: Any) -> None:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    before = memory(pid, "VmRSS")
    # half the connections send one header value that never ends, half header lines that never end
    lines = [
        b"X-Pad: " + b"a" * 65536 if i % 2 else b"X-Pad-" + b"b" * 60 + b": " + b"c" * 16000 + b"\r\n"
        for i in range(CONNECTIONS)
    ]
    floods = [Flood() for _ in range(CONNECTIONS)]
    threads = [
        threading.Thread(target=flood, args=(daemon.port, line, out)) for line, out in zip(lines, floods, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)

    peak, after = memory(pid, "VmHWM") - before, memory(pid, "VmRSS") - before
    figures(
        connections=CONNECTIONS,
        sent_mib=round(sum(f.sent for f in floods) / MiB, 1),
        peak_growth_mib=round(peak / MiB, 1),
        growth_after_mib=round(after / MiB, 1),
    )
    for out in floods:
        assert out.sent < 4 * MiB, f"the daemon took {out.sent} bytes of one unfinished head"
        assert out.answer == b"" or out.answer.startswith(b"HTTP/1.1 431 "), out.answer[:200]
    assert any(out.answer.startswith(b"HTTP/1.1 431 ") for out in floods), [f.error for f in floods]
    assert peak < GROWTH_BOUND, f"resident memory grew by {peak / MiB:.0f} MiB"
    assert after < GROWTH_BOUND
    assert httpx.get(f"{daemon.url}/healthz", timeout=30).status_code == 200


def test_too_many_header_fields_are_refused_before_authentication(daemon: Daemon) -> None:
    fields = b"".join(b"x-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    assert len(fields) < MAX_HEAD_BYTES  # the count is what is refused, not the size

    answer = raw(daemon.port, b"GET /v1/records/deal HTTP/1.1\r\nHost: flowctl\r\n" + fields + b"\r\n")

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:300]
    assert b"header fields" in answer


def test_a_head_of_ordinary_size_still_works(daemon: Daemon) -> None:
    headers = {f"x-extra-{i}": "v" * 100 for i in range(50)}
    headers |= {"Cookie": "c" * 8192, **daemon.headers()}

    response = httpx.get(f"{daemon.url}/v1/records/deal", headers=headers, timeout=30)

    assert response.status_code == 200, response.text


def test_the_limit_is_per_request_on_a_kept_alive_connection(daemon: Daemon) -> None:
    """A reverse proxy sends many requests over one connection: each head is counted on its own."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    try:
        for n in range(4):  # 4 × 40 KiB on one connection, each under the limit
            connection.request(
                "GET", "/v1/records/deal", headers={"Authorization": f"Bearer {TOKEN}", "X-Big": str(n) * 40_960}
            )
            response = connection.getresponse()
            response.read()
            assert response.status == 200, n
    finally:
        connection.close()
