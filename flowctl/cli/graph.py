"""``flowctl graph``: a flow's nodes and connectors, or a pipeline's stages, as a diagram."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flowctl.cli.common import load_or_exit
from flowctl.engine import graph


@click.command(
    "graph",
    epilog="""\b
Examples:
  flowctl graph welcome-new-email examples/helpdesk            # Mermaid, paste into a .md
  flowctl graph furniture-sales examples/furniture-store --format dot | dot -Tsvg > p.svg""",
)
@click.argument("name")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
def command(name: str, directory: Path, fmt: str) -> None:
    """Draw the flow or pipeline NAME defined under DIR (default: .)."""
    bundle = load_or_exit(directory).bundle
    if name in bundle.flows:
        flow = bundle.flows[name]
        sys.stdout.write(graph.flow_mermaid(flow) if fmt == "mermaid" else graph.flow_dot(flow))
        return
    if name in bundle.pipelines:
        pipeline = bundle.pipelines[name]
        sys.stdout.write(graph.pipeline_mermaid(pipeline) if fmt == "mermaid" else graph.pipeline_dot(pipeline))
        return
    known = sorted([*bundle.flows, *bundle.pipelines])
    raise click.BadParameter(
        f"no flow or pipeline named '{name}' in {directory}; known: {', '.join(known) or 'none'}", param_hint="NAME"
    )
