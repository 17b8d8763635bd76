"""``flowctl validate`` over 1,000 generated flows against merely parsing the same YAML files.

Generates a config directory (one object type, two templates, an allocation rule and 1,000
flows of eight nodes each, one flow per file), then times, in this one process and best of
``--rounds``:

* ``validate``: what ``flowctl validate DIR`` runs (load, schema, model, semantic checks, the
  text report), in process;
* ``parse``: ``yaml.safe_load_all`` over the same files (PyYAML's pure-Python loader);
* ``parse (C)``: ``yaml.load_all(Loader=yaml.CSafeLoader)``, for honesty: libyaml is faster.

The last line gives validate's time as a multiple of each (the target is at most 3x ``parse``):

    validate: 2.4x yaml.safe_load_all (1000 flows: validate 1.10 s, parse 0.46 s; 9.8x the C loader, 0.11 s)

Run: ``python bench/bench_validate.py [--flows N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from flowctl.cli.validate import validate

OBJECTS = """\
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string, required: true}
    phone: {type: phone}
    email: {type: email}
    segment: {type: enum, values: [vip, std]}
    score: {type: integer}
    owner: {type: user}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: welcome}
spec: {channel: email, subject: "Chào {{ record.full_name }}", text: "Xin chào {{ record.full_name }}"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: hello-sms}
spec: {channel: sms, text: "Chao {{ record.full_name | unaccent }}"}
---
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: sales-rr}
spec: {strategy: round_robin, users: [lan, minh, tuan]}
"""

FLOW = """\
apiVersion: flowctl/v1
kind: Flow
metadata:
  name: flow-{n}
  description: Generated flow number {n}
spec:
  object: contact
  trigger: {{on: updated, changed: [email], if: "record.email and not before.email and record.score != {n}"}}
  mode: single
  start: pick
  nodes:
    pick:
      type: branch
      branches:
        - {{if: "record.segment == 'vip' and record.score >= {n}", next: vip}}
      default: std
    vip: {{type: send_email, template: welcome, next: wait}}
    std: {{type: send_sms, template: hello-sms, to: "{{{{ record.phone }}}}", next: wait}}
    wait: {{type: wait_event, event: ticket.created, for: 3d, on_timeout: call, next: mark}}
    call:
      type: create_task
      title: "Gọi {{{{ record.full_name }}}} ({n})"
      assignee: {{rule: sales-rr}}
      due: 1d
      next: mark
    mark: {{type: update_fields, set: {{score: "{{{{ (record.score or 0) + 1 }}}}"}}, next: pause}}
    pause: {{type: delay, for: 1d12h, next: done}}
    done: {{type: stop}}
"""


def generate(root: Path, flows: int) -> list[Path]:
    (root / "flows").mkdir(parents=True)
    (root / "objects.yaml").write_text(OBJECTS, encoding="utf-8")
    (root / "flowctl.yaml").write_text(
        "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: bench}\nspec: {timezone: Asia/Ho_Chi_Minh}\n",
        encoding="utf-8",
    )
    for n in range(flows):
        (root / "flows" / f"flow-{n:04d}.yaml").write_text(FLOW.format(n=n), encoding="utf-8")
    return sorted(root.rglob("*.yaml"))


def best(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "config"
        files = generate(root, args.flows)
        out = io.StringIO()
        assert validate([root], "text", out), out.getvalue()
        print(out.getvalue().splitlines()[-1])

        def parse(loader: Callable[[str], object]) -> Callable[[], None]:
            def run() -> None:
                for path in files:
                    for _ in loader(path.read_text(encoding="utf-8")):  # type: ignore[attr-defined]
                        pass

            return run

        pure = best(args.rounds, parse(yaml.safe_load_all))
        c_loader = best(args.rounds, parse(lambda text: yaml.load_all(text, Loader=yaml.CSafeLoader)))
        checked = best(args.rounds, lambda: validate([root], "text", io.StringIO()))
    print(
        f"{len(files)} files; best of {args.rounds}: validate {checked:.2f} s, yaml.safe_load_all {pure:.2f} s, "
        f"CSafeLoader {c_loader:.2f} s"
    )
    print(
        f"validate: {checked / pure:.1f}x yaml.safe_load_all ({args.flows} flows: validate {checked:.2f} s, "
        f"parse {pure:.2f} s; {checked / c_loader:.1f}x the C loader, {c_loader:.2f} s)"
    )


if __name__ == "__main__":
    main()
