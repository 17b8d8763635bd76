"""``flowctl test``: run the directory's ``kind: Test`` scenarios with a fake clock."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowctl.cli.common import load_or_exit
from flowctl.cli.terminal import paint
from flowctl.engine.scenario import run_scenarios


@click.command(
    "test",
    epilog="""\b
Examples:
  flowctl test                               # every scenario under .
  flowctl test examples/furniture-store
  flowctl test . -k "vip gets vip welcome"   # one scenario by name
  flowctl test . --format json               # for CI dashboards

\b
Nothing is sent: the engine runs in memory with a fake clock starting at
each scenario's 'now'. The last line reads 'N passed, N failed'.
Exit codes: 0 all passed, 1 a scenario failed or the config is invalid.""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("-k", "names", multiple=True, help="Run only the scenario with this name (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(directory: Path, names: tuple[str, ...], fmt: str) -> None:
    """Run the kind: Test scenarios under DIR (default: .)."""
    loaded = load_or_exit(directory)
    results = run_scenarios(loaded.bundle, list(names) or None)
    passed = sum(r.passed for r in results)
    failed = len(results) - passed
    if fmt == "json":
        json.dump(
            {
                "passed": passed,
                "failed": failed,
                "scenarios": [
                    {
                        "name": r.name,
                        "file": r.file,
                        "passed": r.passed,
                        "steps": r.steps,
                        "failures": [
                            {"step": f.step, "place": f.place, "message": f.message, "trace": f.trace}
                            for f in r.failures
                        ],
                    }
                    for r in results
                ],
            },
            sys.stdout,
            ensure_ascii=False,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        for result in results:
            if result.passed:
                click.echo(f"{paint('PASS', 'ok')}  {result.name}  ({result.file}, {result.steps} steps)")
                continue
            click.echo(f"{paint('FAIL', 'error')}  {result.name}  ({result.file})")
            shown: set[str] = set()
            for failure in result.failures:
                click.echo(f"  {failure.place}: step {failure.step}: {failure.message}")
                if failure.trace and failure.trace not in shown:
                    shown.add(failure.trace)
                    click.echo("  trace:")
                    click.echo("\n".join("    " + line for line in failure.trace.splitlines()))
        if names and not results:
            click.echo(f"no scenario named {', '.join(names)}")
        click.echo(f"{passed} passed, {failed} failed")
    sys.exit(0 if (failed == 0 and results) or (not results and not names) else 1)
