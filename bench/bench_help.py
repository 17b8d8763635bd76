"""How long ``flowctl --help`` takes, against the interpreter starting and doing nothing.

Runs each command ``--runs`` times as a fresh process (after one warm-up run, so the file
cache is warm as it is for a user typing commands) and takes the best. The last line:

    flowctl --help: 0.11 s (target 0.2 s; 1.2x a bare 'python -c print()', 0.09 s)

Run: ``python bench/bench_help.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time


def best(command: list[str], runs: int) -> float:
    subprocess.run(command, check=True, capture_output=True)  # warm-up: file cache, .pyc files
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
        assert done.stdout, "no output"
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    script = shutil.which("flowctl")
    flowctl = [script, "--help"] if script else [sys.executable, "-m", "flowctl", "--help"]
    help_time = best(flowctl, args.runs)
    bare = best([sys.executable, "-c", "print()"], args.runs)
    module = best([sys.executable, "-c", "import flowctl.cli.main; print()"], args.runs)
    print(
        f"{' '.join(flowctl)}: best {help_time:.3f} s; importing flowctl.cli.main {module:.3f} s; "
        f"bare interpreter {bare:.3f} s"
    )
    print(
        f"flowctl --help: {help_time:.2f} s (target 0.2 s; {help_time / bare:.1f}x a bare 'python -c print()', "
        f"{bare:.2f} s)"
    )


if __name__ == "__main__":
    main()
