"""flowctl beside Node-RED on one core: the shared harness (``../shared/bench/vs-nodered``) run
against this working tree, in one command.

1. copies the harness to a writable folder (``--harness``, default
   ``$TMPDIR/flowctl-vs-nodered``) unless it is there already;
2. sets it up once, as its README says: a virtualenv with its Python packages and
   ``npm install`` of Node-RED (skipped when present; needs the package registries);
3. runs its ``vs_nodered.sh`` (Node-RED, flowctl and the uvicorn floor interleaved, each server
   pinned to CPU 1 and ``wrk`` to CPU 0, at 1, 8 and 64 clients) with ``FLOWCTL`` set to this
   tree's ``python -m flowctl``, so the code measured is the code checked out here.

The harness's output goes through as it comes; the last line is its summary,
``flowctl/nodered c64 ratio X (c1 A, c8 B); flowctl/py_parse c64 Y`` (same-round medians), and
its raw figures are in ``HARNESS/results/NAME.json``.

    python bench/bench_vs_nodered.py                          # 3 rounds x 10 s, about 6 minutes
    python bench/bench_vs_nodered.py --rounds 1 --duration 5  # a quick look
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "bench" / "vs-nodered"
#: What the harness's README installs in its virtualenv.
PACKAGES = [
    *("sqlalchemy>=2", "jinja2", "jsonschema", "fastjsonschema", "uvicorn[standard]", "starlette"),
    *("httpx", "psutil", "orjson"),
]


def prepare(shared: Path, harness: Path) -> None:
    """A writable, set-up copy of the harness at ``harness`` (what its README's setup does)."""
    if not (harness / "vs_nodered.sh").exists():
        if not (shared / "vs_nodered.sh").exists():
            sys.exit(f"bench_vs_nodered: no harness at {shared} (give --shared PATH to the vs-nodered folder)")
        print(f"copying {shared} to {harness}", flush=True)
        shutil.copytree(shared, harness, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".venv", "node_modules"))
    for tool in ("wrk", "taskset", "node", "npm"):
        if shutil.which(tool) is None:
            sys.exit(f"bench_vs_nodered: {tool} is not installed (apt-get install wrk nodejs npm util-linux)")
    python = harness / ".venv" / "bin" / "python"
    if not python.exists():
        print("setting up the harness's virtualenv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(harness / ".venv")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    if not (harness / "node-red" / "node_modules").exists():
        print("installing Node-RED (npm install)", flush=True)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=harness / "node-red", check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=SHARED, help="the harness to copy (default: %(default)s)")
    parser.add_argument("--harness", type=Path, default=Path(tempfile.gettempdir()) / "flowctl-vs-nodered")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per concurrency and server (default 10)")
    parser.add_argument("--name", default="vs_nodered", help="results/NAME.json in the harness")
    args = parser.parse_args()
    prepare(args.shared, args.harness)
    env = dict(os.environ, DURATION=str(args.duration), ROUNDS=str(args.rounds), NAME=args.name)
    env["FLOWCTL"] = shlex.join([sys.executable, "-m", "flowctl"])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    print(f"flowctl from {REPO} ({env['FLOWCTL']}), {args.rounds} rounds x {args.duration} s", flush=True)
    command = ["bash", "vs_nodered.sh"]
    with subprocess.Popen(command, cwd=args.harness, env=env, stdout=subprocess.PIPE, text=True) as run:
        assert run.stdout is not None
        last = ""
        for line in run.stdout:  # as it comes: the harness says what it is doing
            print(line, end="", flush=True)
            last = line.strip() or last
    if run.returncode != 0:
        print(f"bench_vs_nodered: vs_nodered.sh failed (rc={run.returncode})", file=sys.stderr)
        return run.returncode
    if not last.startswith("flowctl/nodered"):  # the harness's summary is its last line
        print("bench_vs_nodered: vs_nodered.sh printed no summary line", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
