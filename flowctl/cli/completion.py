"""``flowctl completion SHELL``: the script that makes the shell complete flowctl's commands and options.

The script is click's own (the same as ``_FLOWCTL_COMPLETE=bash_source flowctl``): it calls
``flowctl`` back with ``_FLOWCTL_COMPLETE`` set to ask for completions, so it follows new commands
without being installed again.
"""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command(
    "completion",
    epilog="""\b
Install (once; open a new shell afterwards):
  bash:  flowctl completion bash > ~/.local/share/bash-completion/completions/flowctl
         (or add  eval "$(flowctl completion bash)"  to ~/.bashrc; needs bash 4.4+)
  zsh:   flowctl completion zsh > ~/.zfunc/_flowctl
         (with  fpath+=~/.zfunc; autoload -Uz compinit; compinit  in ~/.zshrc)
  fish:  flowctl completion fish > ~/.config/fish/completions/flowctl.fish

\b
Examples:
  flowctl completion bash
  eval "$(flowctl completion zsh)"     # this shell only""",
)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def command(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish) to stdout."""
    completion = get_completion_class(shell)
    if completion is None:  # every name in SHELLS is one of click's
        raise click.UsageError(f"no completion for {shell}")
    click.echo(completion(ctx.find_root().command, {}, "flowctl", "_FLOWCTL_COMPLETE").source())
