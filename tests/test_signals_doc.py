"""The metrics docs/operations.md tells operators to alert on exist: each is registered somewhere
in flowctl (a renamed metric would otherwise leave an alert that never fires)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_metric_in_signals_to_alert_on_is_registered() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Signals to alert on", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(flowctl_[a-z_]+)", section))
    assert len(named) >= 10, named
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "flowctl").rglob("*.py"))
    registered = set(re.findall(r'"(flowctl_[a-z_]+)"', source))
    assert named <= registered, f"named in the docs but not registered: {sorted(named - registered)}"
