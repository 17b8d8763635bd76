"""Keep the garbage collector off what the daemon built at start-up.

A daemon holds a large, long-lived heap from its first second: the configuration's bundle and
compiled templates, SQLAlchemy's tables and compiled statements, Jinja, uvicorn. CPython's full
collections walk every tracked object, so each one cost the worker about as much as a batch of
changes. :func:`settle` runs once when start-up is done: one collection, then ``gc.freeze()``
moves what survived out of the collector's sight for good (it is not garbage: it lives as long as
the process), and the young generation's threshold goes up so the many short-lived objects of a
batch (rows, steps, traces) are mostly freed by reference counting before a collection runs.
"""

from __future__ import annotations

import gc
import os

#: Allocations before a young collection (CPython's default is 700).
YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Collect once, freeze the survivors, raise the young threshold. ``FLOWCTL_GC_DEFAULT=1``
    leaves CPython's collector as it is (to compare)."""
    if os.environ.get("FLOWCTL_GC_DEFAULT") == "1":
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
