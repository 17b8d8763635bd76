"""heap.settle: start-up's garbage is collected, the survivors frozen, later garbage still freed.

Each case runs in a child interpreter: freezing the heap of pytest's own process would change
every test after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import gc, json, weakref
    from flowctl.runtime.daemon import heap

    class Node:
        pass

    def cycle():
        a, b = Node(), Node()
        a.other, b.other = b, a
        return weakref.ref(a)

    gc.disable()  # nothing collects the start-up garbage by chance before settle
    before = cycle()
    kept = Node()
    gc.enable()
    heap.settle()
    after = cycle()
    gc.collect()
    print(json.dumps({
        "before_freed": before() is None,
        "after_freed": after() is None,
        "frozen": gc.get_freeze_count(),
        "young": gc.get_threshold()[0],
    }))
    """
)


def _run(env: dict[str, str]) -> dict[str, object]:
    import json

    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_settle_collects_start_up_garbage_then_freezes_the_rest_and_still_frees_later_cycles() -> None:
    got = _run({"FLOWCTL_GC_DEFAULT": ""})
    assert got["before_freed"] is True  # garbage from start-up was collected, not frozen for good
    assert got["after_freed"] is True  # the collector still runs on what the daemon allocates later
    assert isinstance(got["frozen"], int) and got["frozen"] > 1000  # modules, classes, the config
    assert got["young"] == 20_000


def test_flowctl_gc_default_leaves_the_collector_as_cpython_has_it() -> None:
    got = _run({"FLOWCTL_GC_DEFAULT": "1"})
    assert got["frozen"] == 0
    assert got["young"] == 700
    assert got["after_freed"] is True
