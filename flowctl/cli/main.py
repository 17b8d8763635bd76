"""The ``flowctl`` command group.

Subcommands are imported only when they run, so ``flowctl --help`` stays fast (no jsonschema,
jinja2 or sqlalchemy import). Each subcommand lives in its own module as ``command``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import click

from flowctl import __version__
from flowctl.cli.terminal import decide_color

#: name -> (module under flowctl.cli, one-line help shown by ``flowctl --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Create a new configuration repository: layout, an example with its test, editor and CI files."),
    "validate": ("validate", "Check every YAML document: schema and semantic checks."),
    "test": ("test_cmd", "Run the kind: Test scenarios with a fake clock; nothing is sent."),
    "dry-run": ("dry_run", "Show what one event would do: the trace and the effects."),
    "graph": ("graph", "Draw a flow or pipeline as Mermaid or Graphviz dot."),
    "schema": ("schema", "Write the JSON Schemas for editors and CI."),
    "run": ("run", "Run the daemon: HTTP API, workers, timers and delivery."),
    "db": ("db", "Database maintenance: upgrade, backup and restore, stats and retention."),
    "records": ("records", "Inspect and change records in the store."),
    "runs": ("runs", "Inspect runs and their traces."),
    "outbox": ("outbox", "Inspect and retry outgoing messages."),
    "care": ("care", "Care processes: list, preview a day, forecast firings."),
    "plan": ("plan", "Show what applying a directory would change, checked against the live system."),
    "apply": ("apply", "Deploy a directory as the current configuration, after the plan's checks."),
    "history": ("history", "List deployed configuration versions, newest first."),
    "rollback": ("rollback", "Deploy a stored version again, planned and checked like apply."),
    "replay": ("replay", "Re-run a period's recorded changes through a directory and compare the effects."),
    "completion": ("completion", "Print the shell completion script for bash, zsh or fish."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (module, _) in COMMANDS.items() if _available(module)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _available(entry[0]):
            return None
        module = importlib.import_module(f"flowctl.cli.{entry[0]}")
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(module: str) -> bool:
    return importlib.util.find_spec(f"flowctl.cli.{module}") is not None


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  flowctl validate examples/furniture-store
  flowctl test examples/furniture-store
  flowctl dry-run examples/helpdesk --event event.yaml --advance 3d
  flowctl run                     # the daemon on ./, SQLite and the log channel
  flowctl completion bash > ~/.local/share/bash-completion/completions/flowctl

\b
On a terminal only: colour, list lines cut to the window's width, progress of long commands.
--no-color or NO_COLOR=1 turn colour off; --color or FORCE_COLOR=1 keep it when piped.
Shell completion: 'flowctl completion --help'.

Run 'flowctl COMMAND --help' for a command's options.""",
)
@click.version_option(__version__, prog_name="flowctl")
@click.option("--no-color", is_flag=True, help="No colour, even on a terminal (same as NO_COLOR=1).")
@click.option("--color", "force_color", is_flag=True, help="Colour even when piped (same as FORCE_COLOR=1).")
@click.pass_context
def cli(ctx: click.Context, no_color: bool, force_color: bool) -> None:
    """flowctl: CRM automations (flows, pipelines, care processes) as YAML in git."""
    ctx.color = decide_color(no_color, force_color, os.environ)


def main() -> None:
    cli(complete_var="_FLOWCTL_COMPLETE")  # the same under 'python -m flowctl'
