"""CLI tests run the click commands in-process with ``CliRunner`` on the examples and tmp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowctl.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if (p / "flowctl.yaml").is_file())


#: The smallest valid config: a Config and one object type.
CONFIG = """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: main}
spec: {timezone: Asia/Ho_Chi_Minh}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec: {fields: {full_name: {type: string}}}
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(params=EXAMPLES, ids=[p.name for p in EXAMPLES])
def example(request: pytest.FixtureRequest) -> Path:
    return request.param
