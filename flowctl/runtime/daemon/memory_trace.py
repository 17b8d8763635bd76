"""``FLOWCTL_TRACEMALLOC=FILE``: where a daemon process's memory goes, written every minute.

For an operator who sees resident memory grow: with the variable set, every
``FLOWCTL_TRACEMALLOC_SECONDS`` (default 60) each process of ``flowctl run`` (the HTTP one and the
engine one, told apart by their pid) appends to FILE one line of
counters: resident memory, Python's object allocator (blocks in use), what SQLite's allocator
holds now and at its peak (page caches, statements), glibc malloc's arenas (bytes in use, bytes free inside them,
mmapped blocks) and the thread count. With ``FLOWCTL_TRACEMALLOC_LINES`` > 0 (default 25) it
also runs ``tracemalloc`` and lists the source lines that hold the most Python memory and those
that grew the most since the previous sample. Tracing costs CPU on every allocation, and each
snapshot's copy of the traces stays in the process's free memory: for a diagnosis, not every day;
``FLOWCTL_TRACEMALLOC_LINES=0`` keeps only the counters, which cost nothing measurable.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import threading
import time
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

ENV = "FLOWCTL_TRACEMALLOC"
EVERY_ENV = "FLOWCTL_TRACEMALLOC_SECONDS"
LINES_ENV = "FLOWCTL_TRACEMALLOC_LINES"


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def start_from_env(env: Mapping[str, str], stop: threading.Event) -> threading.Thread | None:
    """Start tracing and the sampling thread when ``FLOWCTL_TRACEMALLOC`` names a file."""
    path = env.get(ENV, "")
    if not path:
        return None
    every = float(env.get(EVERY_ENV) or 60)
    top = int(env.get(LINES_ENV) or 25)
    if top > 0:
        tracemalloc.start()
    thread = threading.Thread(
        target=_sample_until, args=(Path(path), every, top, stop), name="flowctl-tracemalloc", daemon=True
    )
    thread.start()
    return thread


def _sample_until(path: Path, every: float, top: int, stop: threading.Event) -> None:
    started = time.monotonic()
    previous: tracemalloc.Snapshot | None = None
    while not stop.wait(every):
        lines = [f"== {time.monotonic() - started:.0f}s pid {os.getpid()}: {counters()}"]
        if top > 0:
            snapshot = tracemalloc.take_snapshot().filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
            current, peak = (n / 2**20 for n in tracemalloc.get_traced_memory())
            lines += [f"-- python traced {current:.1f} MiB (peak {peak:.1f}), largest by line"]
            lines += [str(stat) for stat in snapshot.statistics("lineno")[:top]]
            if previous is not None:
                lines += ["-- grew most since the previous sample"]
                lines += [str(stat) for stat in snapshot.compare_to(previous, "lineno")[:top]]
            previous = snapshot
        with path.open("a") as out:
            out.write("\n".join(lines) + "\n")


def counters() -> str:
    """One line: rss, Python's allocator, SQLite's, glibc malloc's, threads (MiB where a size)."""
    status = _status()
    mib = 2**20
    sqlite, sqlite_peak = _sqlite_bytes()
    text = (
        f"rss {status.get('VmRSS', 0) / 1024:.1f} MiB (anon {status.get('RssAnon', 0) / 1024:.1f}), "
        f"python blocks {sys.getallocatedblocks()}, sqlite {sqlite / mib:.1f} MiB (peak {sqlite_peak / mib:.1f}), "
    )
    info = _mallinfo()
    if info is not None:
        text += (
            f"malloc in use {info.uordblks / mib:.1f} MiB, free in arenas {info.fordblks / mib:.1f} MiB, "
            f"arenas {info.arena / mib:.1f} MiB, mmapped {info.hblkhd / mib:.1f} MiB, "
        )
    return text + f"threads {status.get('Threads', 0)}"


def _status() -> dict[str, int]:
    with contextlib.suppress(OSError):
        text = Path("/proc/self/status").read_text()
        return {k: int(v) for k, v in re.findall(r"(VmRSS|RssAnon|Threads):\s+(\d+)", text)}
    return {}


def _mallinfo() -> _Mallinfo2 | None:
    """glibc's ``mallinfo2()`` (summed over every arena), None elsewhere."""
    try:
        call = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    call.restype = _Mallinfo2
    info: _Mallinfo2 = call()
    return info


def _sqlite_bytes() -> tuple[int, int]:
    """``sqlite3_memory_used()`` and ``sqlite3_memory_highwater(0)`` of the SQLite library Python's
    ``sqlite3`` runs on ((0, 0) if unknown): a page cache filled once shows in the second."""
    try:
        import _sqlite3  # lazy: start-up time (only when tracing)

        library = ctypes.CDLL(_sqlite3.__file__)
        used, peak = library.sqlite3_memory_used, library.sqlite3_memory_highwater
    except (ImportError, OSError, AttributeError):
        return 0, 0
    used.restype = peak.restype = ctypes.c_int64
    peak.argtypes = [ctypes.c_int]
    return int(used()), int(peak(0))
