"""What a hot reload of a large configuration costs, against building that configuration once.

The configuration: 5,000 flows (one ``on: updated`` trigger with an ``if:`` each, one SMS node),
50 SMS templates, one object type, in 50 files. "Build once" is what any process must pay to run
a version: load and validate the directory, then ``Engine(bundle)``. A reload is timed as the
daemon does it, in both of its processes, on a SQLite store:

- the HTTP process: ``Service.reload()`` (read the directory, plan against the deployed version,
  deploy, switch its engine);
- the engine process: ``pick_up`` of the version just deployed (rebuild it from the store, switch).

Each reload changes one template's text, so each deploys a new version; no run is open, so no
version but the current one need stay. Printed: the build-once CPU time, each reload's CPU time in
each process, the RSS growth over the reloads after the first (a process that keeps every old
engine grows by the size of one each time: RSS, and the count of Python's allocated blocks,
which the allocator's reuse of freed memory does not blur), and on the last line the ratio of a reload's CPU time
in the HTTP process to the build-once time.

Run: ``python bench/bench_reload.py [--flows 5000] [--reloads 5]``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from support import order_config

HEADER = (
    order_config(timezone="UTC", statuses="[new, confirmed, paid, shipped]")
    + """\
---
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms}
spec: {type: log}
"""
)

TEMPLATE = """\
---
apiVersion: flowctl/v1
kind: Template
metadata: {{name: t{i}}}
spec:
  channel: sms
  text: "Xin chao {{{{ record.full_name }}}}, don hang {{{{ record.id }}}}: buoc {i}{mark}."
"""

FLOW = """\
---
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: f{i}}}
spec:
  object: order
  trigger: {{on: updated, changed: [status], if: "record.status == 'paid' and record.amount > {i}"}}
  start: sms
  nodes:
    sms: {{type: send_sms, template: t{t}}}
"""


def write_config(folder: Path, flows: int, templates: int = 50, files: int = 50, mark: str = "") -> None:
    (folder / "flowctl.yaml").write_text(HEADER, encoding="utf-8")
    (folder / "templates.yaml").write_text(
        "".join(TEMPLATE.format(i=i, mark=mark if i == 0 else "") for i in range(templates)), encoding="utf-8"
    )
    per_file = -(-flows // files)
    for f in range(files):
        part = range(f * per_file, min(flows, (f + 1) * per_file))
        (folder / f"flows-{f:02d}.yaml").write_text(
            "".join(FLOW.format(i=i, t=i % templates) for i in part), encoding="utf-8"
        )


def rss_mib() -> float:
    gc.collect()
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=5000)
    parser.add_argument("--reloads", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from flowctl.engine.core import Engine
    from flowctl.gitops import versions
    from flowctl.runtime.compose import daemon_service, engine_service
    from flowctl.runtime.daemon.reload import pick_up
    from flowctl.spec.config import load_bundle
    from flowctl.store import open_store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "config"
        folder.mkdir()
        write_config(folder, args.flows)
        cpu = time.process_time()
        loaded = load_bundle(folder)
        assert loaded.ok and loaded.bundle is not None, [str(i) for i in loaded.errors[:5]]
        Engine(loaded.bundle, "once")
        build_once = time.process_time() - cpu
        print(f"build once: {args.flows:,} flows, {build_once:.2f} s CPU (load, validate, Engine)")

        database = f"sqlite:///{tmp}/bench.db"
        api = daemon_service(folder, loaded, open_store(database), env={})
        api.record_version()
        engine_side = engine_service(loaded, open_store(database), api.version)
        rss_api, rss_engine, costs, blocks = [], [], [], []
        engine_cache: dict[str, object] = {}
        for n in range(1, args.reloads + 1):
            write_config(folder, args.flows, mark=f" r{n}")
            cpu = time.process_time()
            assert api.reload() == "deployed", api.last_reload_problem
            api_cpu = time.process_time() - cpu
            rss_api.append(rss_mib())
            # the engine process is another process: its cache of the last version built is its own
            last: dict[str, object] = getattr(versions, "_last", {})  # (none before the cache existed)
            api_cache = dict(last)
            last.clear()
            last.update(engine_cache)
            cpu = time.process_time()
            assert pick_up(engine_side)
            engine_cpu = time.process_time() - cpu
            engine_cache = dict(last)
            last.clear()
            last.update(api_cache)
            del api_cache
            rss_engine.append(rss_mib())
            blocks.append(sys.getallocatedblocks())
            costs.append(api_cpu)
            print(
                f"reload {n}: HTTP process {api_cpu:.2f} s CPU, engine process {engine_cpu:.2f} s CPU; "
                f"engines held {len(api.engines.by_version)} and {len(engine_side.engines.by_version)}; "
                f"RSS {rss_engine[-1]:.0f} MiB; {blocks[-1]:,} Python blocks allocated"
            )
        # both services live in this one process: the figures are theirs together. The first
        # reload raises the allocator's high-water mark (two versions are alive while the second
        # builds); what each further reload adds is what it keeps.
        steps = max(1, args.reloads - 2)
        growth, kept = (rss_engine[-1] - rss_engine[1]) / steps, (blocks[-1] - blocks[1]) / steps
        print(
            f"each reload after the second: RSS {growth:+.1f} MiB, {kept:+,.0f} Python blocks "
            f"(both processes' services together)"
        )
        ratio = sum(costs) / len(costs) / build_once
        print(
            f"reload: {ratio:.2f}x the build-once CPU time ({sum(costs) / len(costs):.2f} s vs {build_once:.2f} s, "
            f"mean of {args.reloads} reloads, HTTP process; {args.flows:,} flows)"
        )


if __name__ == "__main__":
    main()
