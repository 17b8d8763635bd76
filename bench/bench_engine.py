"""Record updates per second through the engine alone, on one core.

Each update changes one field of one record; it matches one automation (a flow triggered
``on: updated`` with one ``if:`` condition) whose one node renders one SMS template (with the
``unaccent`` filter), counts its segments and emits the effect, with the run's full trace. The
timed loop is what the daemon's worker does per change minus the database: build the change,
``Engine.handle(state, change, now)``, apply the step to the in-memory state. Garbage collection
stays on (after ``gc.freeze()`` of the setup, as a long-running process would have it). "On one
core" is measured as the process's CPU time (the box may be busy with other work); the wall clock
figure is printed beside it.

The baseline, timed in the same run: rendering that SMS template alone for the same records.
The last line:

    engine: 21,500 updates/s on one core (target 20,000; best of 5 x 20,000 updates, CPU time;
    20,900/s by the wall clock; an update costs 6.4x rendering its SMS alone)

Run: ``python bench/bench_engine.py [--updates N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from support import order_config

from flowctl.engine import changes
from flowctl.engine.core import Engine
from flowctl.engine.memory import MemoryState
from flowctl.engine.state import Record
from flowctl.spec.config import load_bundle
from flowctl.spec.templating import compile_template

CONFIG = (
    order_config(timezone="Asia/Ho_Chi_Minh", statuses="[new, confirmed]")
    + """\
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: order-confirmed}
spec:
  channel: sms
  text: "Xin chao {{ record.full_name | unaccent }}, don hang {{ record.id }} da duoc xac nhan."
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: confirm-by-sms}
spec:
  object: order
  trigger: {on: updated, changed: [status], if: "record.status == 'confirmed'"}
  start: sms
  nodes:
    sms: {type: send_sms, template: order-confirmed}
"""
)

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
NAMES = ["Nguyễn Thị Lan", "Lê Quang Minh", "Trần Thu Hà", "Phạm Văn Tuấn", "Đỗ Mỹ Hạnh"]


def records(count: int) -> list[Record]:
    return [
        Record(
            object="order",
            id=str(i),
            fields={"full_name": NAMES[i % 5], "phone": "0901234567", "amount": 100_000 + i, "status": "new"},
        )
        for i in range(count)
    ]


def run_engine(engine: Engine, count: int, round_no: int) -> tuple[float, float]:
    state = MemoryState()
    for record in records(count):
        state.records[record.key] = record
    keys = [("order", str(i)) for i in range(count)]
    gc.collect()
    gc.freeze()
    start, cpu = time.perf_counter(), time.process_time()
    for i, key in enumerate(keys):
        change = changes.patch(f"r{round_no}c{i}", state.records[key], "order", key[1], {"status": "confirmed"})
        state.records[key] = change.after  # type: ignore[assignment]
        state.apply(engine.handle(state, change, NOW))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    gc.unfreeze()
    assert len(state.effects) == count, f"{len(state.effects)} effects for {count} updates"
    assert all(e.params["segments"] == 1 and e.params["encoding"] == "GSM-7" for e in state.effects)
    assert not state.problems, state.problems[:3]
    return elapsed, cpu


def run_render(engine: Engine, count: int) -> tuple[float, float]:
    """The baseline: only rendering the SMS text, with the same contexts the engine builds."""
    template = compile_template(engine.bundle.templates["order-confirmed"].text)
    contexts = [engine.context(r, now=NOW) for r in records(count)]
    start, cpu = time.perf_counter(), time.process_time()
    for ctx in contexts:
        template.render(ctx)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(CONFIG, encoding="utf-8")
        loaded = load_bundle(tmp)
    assert loaded.ok and loaded.bundle is not None, [str(i) for i in loaded.errors]
    engine = Engine(loaded.bundle, "bench")
    engine_runs, render_runs = [], []
    for n in range(args.rounds):
        engine_runs.append(run_engine(engine, args.updates, n))
        render_runs.append(run_render(engine, args.updates))
    wall, cpu = min(t[0] for t in engine_runs), min(t[1] for t in engine_runs)
    render = min(t[1] for t in render_runs)
    print(f"rounds, wall clock (updates/s): {', '.join(f'{args.updates / t[0]:,.0f}' for t in engine_runs)}")
    print(f"rounds, CPU time (updates/s):   {', '.join(f'{args.updates / t[1]:,.0f}' for t in engine_runs)}")
    print(
        f"per update {cpu / args.updates * 1e6:.1f} us of CPU ({wall / args.updates * 1e6:.1f} us wall); "
        f"the SMS render alone {render / args.updates * 1e6:.1f} us"
    )
    print(
        f"engine: {args.updates / cpu:,.0f} updates/s on one core (target 20,000; best of {args.rounds} x "
        f"{args.updates:,} updates, CPU time; {args.updates / wall:,.0f}/s by the wall clock; an update costs "
        f"{cpu / render:.1f}x rendering its SMS alone)"
    )


if __name__ == "__main__":
    main()
