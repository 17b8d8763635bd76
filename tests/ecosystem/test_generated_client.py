"""A client generated from /openapi.json by openapi-python-client calls a real daemon.

What a user of another language does with the document: generate a client, then write and read a
record through it. The generator refuses or warns on what it cannot model, so this also keeps the
document generator-friendly (every operation named and tagged, every schema complete).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import httpx

from flowctl.testing import Daemon
from tests.ecosystem.configs import welcome_config


def generate(document: Path, into: Path) -> Path:
    """Run the generator on ``document``; the importable package's folder (on ``sys.path``)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(into / "flowctl_client"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = out.stdout + out.stderr
    assert out.returncode == 0, said
    assert "warning" not in said.lower(), said  # a warning means a piece of the client is missing
    return into


def test_a_generated_client_writes_and_reads_a_record(tmp_path: Path) -> None:
    with Daemon(welcome_config(tmp_path), f"sqlite:///{tmp_path / 'flowctl.db'}", args=("--processes", "1")) as daemon:
        document = tmp_path / "openapi.json"
        document.write_bytes(httpx.get(f"{daemon.url}/openapi.json", timeout=10).content)
        sys.path.insert(0, str(generate(document, tmp_path / "generated")))
        try:
            client_module = importlib.import_module("flowctl_client")
            put_record = importlib.import_module("flowctl_client.api.records.put_record")
            get_record = importlib.import_module("flowctl_client.api.records.get_record")
            models = importlib.import_module("flowctl_client.models")

            with client_module.Client(base_url=daemon.url, raise_on_unexpected_status=True) as client:
                body = models.PutRecord(fields=models.Fields.from_dict({"full_name": "Lan", "phone": "0901234567"}))
                written = put_record.sync_detailed("contact", "1", client=client, body=body, prefer="wait=10")
                read = get_record.sync_detailed("contact", "1", client=client)
        finally:
            sys.path.remove(str(tmp_path / "generated"))
            for name in [n for n in sys.modules if n == "flowctl_client" or n.startswith("flowctl_client.")]:
                del sys.modules[name]

    assert written.status_code == 200, written.content
    assert isinstance(written.parsed, models.Processed)
    assert written.parsed.status.value == "done"
    assert read.status_code == 200, read.content
    assert read.parsed.to_dict()["fields"] == {"full_name": "Lan", "phone": "0901234567"}
