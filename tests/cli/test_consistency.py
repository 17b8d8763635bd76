"""The command line behaves the same way everywhere: the directory, exit codes, help, no stray databases."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from flowctl.cli.main import cli
from tests.cli.conftest import CONFIG, invoke


def every_command() -> list[tuple[str, ...]]:
    """Every command and subcommand, as the words a user types (care belongs to the care engineer)."""
    ctx = click.Context(cli)
    out: list[tuple[str, ...]] = []
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        out.append((name,))
        if isinstance(command, click.Group):
            out.extend((name, sub) for sub in command.list_commands(ctx))
    return out


@pytest.mark.parametrize("words", every_command(), ids=" ".join)
def test_every_command_has_help_with_examples(words: tuple[str, ...]) -> None:
    result = invoke(*words, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"'flowctl {' '.join(words)} --help' shows no example"


def test_validate_a_directory_without_documents_fails(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not yaml", encoding="utf-8")
    result = invoke("validate", tmp_path)
    assert result.exit_code == 1, result.output
    assert f"no flowctl documents under {tmp_path}" in result.output
    data = json.loads(invoke("validate", tmp_path, "--format", "json").output)
    assert data["valid"] is False and data["documents"] == 0
    assert "no flowctl documents" in data["error"]
    github = invoke("validate", tmp_path, "--format", "github")
    assert github.exit_code == 1 and github.output.startswith("::error title=flowctl::no flowctl documents under")
    sarif = json.loads(invoke("validate", tmp_path, "--format", "sarif").output)
    (invocation,) = sarif["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False


def test_validate_still_passes_a_directory_with_documents(tmp_path: Path) -> None:
    (tmp_path / "flowctl.yaml").write_text(CONFIG, encoding="utf-8")
    result = invoke("validate", tmp_path)
    assert result.exit_code == 0, result.output


def test_inspection_commands_take_the_directory_as_an_argument(tmp_path: Path) -> None:
    (tmp_path / "flowctl.yaml").write_text(CONFIG, encoding="utf-8")
    invoke("apply", tmp_path, "--now", "2026-03-10T10:00:00+07:00")
    for words in (("runs", "list"), ("outbox", "list"), ("records", "list", "contact")):
        positional = invoke(*words, tmp_path)
        assert positional.exit_code == 0, (words, positional.output)
        alias = invoke(*words, "--dir", tmp_path)  # the old spelling keeps working
        assert (alias.exit_code, alias.output) == (0, positional.output), words
        both = invoke(*words, tmp_path, "--dir", tmp_path)
        assert both.exit_code == 2, (words, both.output)
        assert "give the directory once" in both.output
    shown = invoke("runs", "show", "nope", tmp_path)
    assert shown.exit_code == 1 and "no run nope" in shown.output
    row = invoke("outbox", "show", "12", tmp_path)
    assert row.exit_code == 1 and "no outbox row 12" in row.output
    retry = invoke("outbox", "retry", "12", "13", tmp_path)
    assert retry.exit_code == 1 and "[12, 13]" in retry.output
    got = invoke("records", "get", "contact", "1", tmp_path)
    assert got.exit_code == 1 and "no record contact/1" in got.output


@pytest.mark.parametrize(
    "words",
    [
        ("history", "DIR"),
        ("runs", "list", "DIR"),
        ("runs", "show", "r1", "DIR"),
        ("outbox", "list", "DIR"),
        ("outbox", "show", "1", "DIR"),
        ("outbox", "retry", "1", "DIR"),
        ("records", "list", "contact", "DIR"),
        ("records", "get", "contact", "1", "DIR"),
        ("replay", "DIR", "--since", "2026-03-01T00:00:00+07:00"),
        ("rollback", "abc", "DIR"),
    ],
    ids=lambda words: " ".join(words[:2]),
)
def test_reading_commands_never_create_a_database(tmp_path: Path, words: tuple[str, ...]) -> None:
    (tmp_path / "flowctl.yaml").write_text(CONFIG, encoding="utf-8")
    args = [tmp_path if word == "DIR" else word for word in words]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert f"no database at {tmp_path / 'flowctl.db'}" in result.output
    assert "flowctl apply" in result.output
    assert not (tmp_path / "flowctl.db").exists()


def test_plan_on_a_fresh_directory_plans_against_nothing_without_creating_the_database(tmp_path: Path) -> None:
    (tmp_path / "flowctl.yaml").write_text(CONFIG, encoding="utf-8")
    result = invoke("plan", tmp_path, "--format", "json", "--now", "2026-03-10T10:00:00+07:00")
    assert result.exit_code == 2, result.output
    plan = json.loads(result.stdout)  # the note about the missing database goes to stderr
    assert plan["status"] == "changes" and plan["deployed"] is None
    assert {d["document"] for d in plan["documents"]} == {"Config/main", "ObjectType/contact"}
    assert not (tmp_path / "flowctl.db").exists()
    text = invoke("plan", tmp_path, "--now", "2026-03-10T10:00:00+07:00")
    assert text.exit_code == 2
    assert f"no database at {tmp_path / 'flowctl.db'} yet" in text.output
    assert not (tmp_path / "flowctl.db").exists()
    applied = invoke("apply", tmp_path, "--now", "2026-03-10T10:00:00+07:00")  # apply does create it
    assert applied.exit_code == 0 and (tmp_path / "flowctl.db").exists()


def test_the_config_database_is_used_and_db_overrides_it(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "flowctl.yaml").write_text(
        CONFIG.replace("{timezone: Asia/Ho_Chi_Minh}", "{timezone: Asia/Ho_Chi_Minh, database: sqlite:///state.db}")
    )
    assert invoke("apply", config, "--now", "2026-03-10T10:00:00+07:00").exit_code == 0
    assert (config / "state.db").exists() and not (config / "flowctl.db").exists()
    assert "  2026-03-10T10:00:00+07:00  " in invoke("history", config).output
    other = tmp_path / "other.db"
    missing = invoke("history", config, "--db", f"sqlite:///{other}")
    assert missing.exit_code == 1 and f"no database at {other}" in missing.output


CARE = """\
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: customer}
spec: {fields: {full_name: {type: string}, birthday: {type: date}}}
---
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: birthday}
spec:
  object: customer
  when: {anniversary_of: birthday, at: "08:00"}
  actions: [{action: create_task, title: "Call {{ record.full_name }}"}]
"""


def test_care_commands_never_create_a_database(tmp_path: Path) -> None:
    (tmp_path / "flowctl.yaml").write_text(CONFIG + CARE, encoding="utf-8")
    listed = invoke("care", "list", tmp_path)
    assert listed.exit_code == 0, listed.output
    assert "birthday" in listed.output
    preview = invoke("care", "preview", "birthday", tmp_path, "--date", "2027-03-14")
    assert preview.exit_code == 1, preview.output
    assert f"no database at {tmp_path / 'flowctl.db'}" in preview.output
    assert not (tmp_path / "flowctl.db").exists()
