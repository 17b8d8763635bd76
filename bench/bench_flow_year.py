"""A flow of 50 nodes with 10 delays, driven through a year of simulated time by ``flowctl test``.

Generates a config directory with one flow (10 segments of delay 5d -> branch -> send_sms or
create_task -> update_fields, the last looping back with ``goto`` and ``max_visits: 8``) and a
``kind: Test`` scenario that creates a record, advances 365 days and checks what happened: 73
timers fire, 139 effects come out. Then times, best of ``--rounds``:

* ``flowctl test DIR`` as a fresh process, the figure (target: under 1 s);
* the baseline: the same command on the same directory with a scenario in which no time
  passes, so the difference is the year itself;
* the scenario alone, in process (``run_scenarios``).

The last line:

    flow-year: flowctl test 0.29 s for 365 days of a 50-node, 10-delay flow (target 1 s; 1.1x the
    same command with no time passing, 0.28 s; the year alone 0.008 s in process)

Run: ``python bench/bench_flow_year.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flowctl.engine.scenario import run_scenarios
from flowctl.spec.config import load_bundle

BASE = """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: year}
spec: {timezone: Asia/Ho_Chi_Minh}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string}
    phone: {type: phone}
    score: {type: integer}
"""

SEGMENTS = 10


def flow() -> str:
    nodes = []
    for k in range(SEGMENTS):
        after = f"d{k + 1}" if k + 1 < SEGMENTS else "again"
        nodes += [
            f"    d{k}: {{type: delay, for: 5d, next: b{k}}}",
            f'    b{k}: {{type: branch, branches: [{{if: "record.score % 2 == 0", next: s{k}}}], default: t{k}}}',
            f'    s{k}: {{type: send_sms, text: "Chao {{{{ record.full_name }}}}, buoc {k}", next: u{k}}}',
            f'    t{k}: {{type: create_task, title: "Gọi {{{{ record.full_name }}}} ({k})", assignee: owner,'
            f" next: u{k}}}",
        ]
        if k + 1 < SEGMENTS:
            bump = '{type: update_fields, set: {score: "{{ record.score + 1 }}"}, next: NEXT}'
            nodes.append(f"    u{k}: {bump.replace('NEXT', after)}")
    nodes.append("    again: {type: goto, node: d0, max_visits: 8}")
    nodes[-2] = nodes[-2].replace(f"next: u{SEGMENTS - 1}}}", "next: again}")
    nodes[-3] = nodes[-3].replace(f"next: u{SEGMENTS - 1}}}", "next: again}")
    assert len(nodes) == 50, len(nodes)
    return (
        "apiVersion: flowctl/v1\nkind: Flow\nmetadata: {name: year-long}\nspec:\n  object: contact\n"
        "  trigger: {on: created}\n  start: d0\n  nodes:\n" + "\n".join(nodes) + "\n"
    )


YEAR = """\
apiVersion: flowctl/v1
kind: Test
metadata: {name: a year of the 50-node flow}
spec:
  now: "2026-01-01T09:00:00+07:00"
  steps:
    - create: {object: contact, id: 1, fields: {full_name: Lan, phone: "0901234567", score: 0}}
    - expect: {effects: []}
    - advance: 365d
    - expect:
        effects: [{action: send_sms, text: "Chao Lan, buoc 0"}, {action: create_task, title: "Gọi Lan (1)"}]
        record: {object: contact, id: 1, fields: {score: %(score)d}}
"""

STILL = """\
apiVersion: flowctl/v1
kind: Test
metadata: {name: no time passes}
spec:
  now: "2026-01-01T09:00:00+07:00"
  steps:
    - create: {object: contact, id: 1, fields: {full_name: Lan, phone: "0901234567", score: 0}}
    - expect: {effects: []}
"""


def directory(root: Path, test: str) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "base.yaml").write_text(BASE, encoding="utf-8")
    (root / "flow.yaml").write_text(flow(), encoding="utf-8")
    (root / "tests" / "year.yaml").write_text(test, encoding="utf-8")
    return root


def timed(command: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds + 1):  # the first run warms the file cache and writes .pyc files
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    script = shutil.which("flowctl")
    flowctl = [script] if script else [sys.executable, "-m", "flowctl"]
    with tempfile.TemporaryDirectory() as tmp:
        year = directory(Path(tmp) / "year", YEAR % {"score": 66})
        still = directory(Path(tmp) / "still", STILL)
        bundle = load_bundle(year).bundle
        assert bundle is not None
        start = time.perf_counter()
        (result,) = run_scenarios(bundle)
        in_process = time.perf_counter() - start
        assert result.passed, [f.message for f in result.failures]
        for _ in range(args.rounds - 1):
            start = time.perf_counter()
            run_scenarios(bundle)
            in_process = min(in_process, time.perf_counter() - start)
        test_year = timed([*flowctl, "test", str(year)], args.rounds)
        test_still = timed([*flowctl, "test", str(still)], args.rounds)
        last = subprocess.run([*flowctl, "test", str(year)], capture_output=True, text=True).stdout.splitlines()
    print(f"{' '.join(flowctl)} test: {last[0]}")
    print(
        f"best of {args.rounds}: flowctl test {test_year:.3f} s (year), {test_still:.3f} s (no time passing); "
        f"run_scenarios in process {in_process:.3f} s"
    )
    print(
        f"flow-year: flowctl test {test_year:.2f} s for 365 days of a 50-node, 10-delay flow (target 1 s; "
        f"{test_year / test_still:.1f}x the same command with no time passing, {test_still:.2f} s; "
        f"the year alone {in_process:.3f} s in process)"
    )


if __name__ == "__main__":
    main()
