"""Readable terminals: colour and progress only on a terminal, aligned lists, shell completion.

In-process runs use ``CliRunner`` (``color=True`` plays a colour terminal); what depends on a real
terminal (``isatty``, its width) runs ``python -m flowctl`` on a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowctl.cli.main import cli
from flowctl.cli.terminal import decide_color, table
from flowctl.engine.core import Engine
from flowctl.gitops.versions import from_version
from flowctl.ports import NewChange
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.store import open_store
from flowctl.testing import FrozenClock
from tests.cli.conftest import CONFIG

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "broken" / "E037-unknown-flow"
WARNED = ROOT / "tests" / "broken" / "W006-webhook-to-log"

ESC = "\x1b["


def run(*args: object, color: bool = True, env: dict[str, str] | None = None) -> Result:
    runner = CliRunner()
    return runner.invoke(cli, [str(a) for a in args], color=color, env=env, catch_exceptions=False)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES")}
    return {**env, **extra}


def with_contacts(config: Path, *names: str) -> None:
    """``config`` deployed to its own SQLite database, with a contact per name (ids 1, 2…)."""
    (config / "flowctl.yaml").write_text(CONFIG, encoding="utf-8")
    assert run("apply", config, "--now", "2026-03-10T10:00:00+07:00").exit_code == 0
    clock = FrozenClock(datetime(2026, 3, 10, 3, tzinfo=UTC))
    store = open_store(f"sqlite:///{config / 'flowctl.db'}")
    try:
        current = store.current_version()
        assert current is not None
        bundle = from_version(current).loaded.bundle
        assert bundle is not None
        store.append_changes(
            [
                NewChange(
                    object="contact",
                    record_id=str(i),
                    op="put",
                    fields={"full_name": name},
                    idempotency_key=f"put-{i}",
                    received_at=clock.now(),
                )
                for i, name in enumerate(names, 1)
            ]
        )
        worker = Worker(store, Engines(Engine(bundle, current.id)), clock, owner="test")
        while worker.run_once():
            pass
    finally:
        store.close()


def in_terminal(
    *args: object, columns: int = 200, env: dict[str, str] | None = None, stdout: int | None = None
) -> tuple[int, str]:
    """Run flowctl with stdin, stdout and stderr on a pseudo-terminal ``columns`` wide (stdout
    elsewhere when given): its exit code and everything the terminal received."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "flowctl", *map(str, args)],
        stdin=follower,
        stdout=follower if stdout is None else stdout,
        stderr=follower,
        env=env or clean_env(),
        cwd=ROOT,
    )
    os.close(follower)
    received = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(leader)
    return process.wait(timeout=60), received.decode().replace("\r\n", "\n")


def piped(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowctl", *map(str, args)],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        cwd=ROOT,
        timeout=60,
    )


# colour


def test_validate_colours_errors_red_and_the_verdict_on_a_colour_terminal() -> None:
    result = run("validate", BROKEN)
    assert result.exit_code == 1
    assert "\x1b[31m\x1b[1merror[E037]\x1b[0m" in result.output, result.output
    assert "\x1b[31m\x1b[1minvalid\x1b[0m" in result.output
    warned = run("validate", WARNED)
    assert "\x1b[33mwarning[W006]\x1b[0m" in warned.output, warned.output
    ok = run("validate", ROOT / "examples" / "helpdesk")
    assert ok.exit_code == 0 and "\x1b[32mvalid\x1b[0m" in ok.output


@pytest.mark.parametrize(
    ("args", "color", "env"),
    [
        ((), False, None),  # not a terminal
        (("--no-color",), True, None),
        ((), True, {"NO_COLOR": "1"}),
    ],
    ids=["piped", "--no-color", "NO_COLOR"],
)
def test_no_colour_when_piped_or_turned_off(args: tuple[str, ...], color: bool, env: dict[str, str] | None) -> None:
    result = run(*args, "validate", BROKEN, color=color, env=env)
    assert result.exit_code == 1 and "error[E037]" in result.output
    assert ESC not in result.output, result.output


def test_an_empty_no_color_does_not_turn_colour_off() -> None:
    assert decide_color(False, False, {"NO_COLOR": ""}) is None
    assert decide_color(False, False, {"NO_COLOR": "1"}) is False
    assert decide_color(False, False, {"FORCE_COLOR": "1"}) is True
    assert decide_color(True, True, {}) is False  # --no-color wins


def test_json_and_sarif_never_carry_colour() -> None:
    for fmt in ("json", "sarif", "github"):
        result = run("validate", BROKEN, "--format", fmt)
        assert ESC not in result.output, fmt


def test_a_real_terminal_gets_colour_a_pipe_and_no_color_do_not() -> None:
    code, shown = in_terminal("validate", BROKEN)
    assert code == 1 and "\x1b[31m\x1b[1merror[E037]" in shown, shown
    code, shown = in_terminal("validate", BROKEN, env=clean_env(NO_COLOR="1"))
    assert code == 1 and "error[E037]" in shown and "\x1b[31m" not in shown, shown
    out = piped("validate", BROKEN)
    assert out.returncode == 1 and "error[E037]" in out.stdout and ESC not in out.stdout + out.stderr
    forced = piped("--color", "validate", BROKEN)
    assert "\x1b[31m" in forced.stdout


# tables


def test_table_aligns_columns_under_a_header_and_cuts_to_the_width() -> None:
    lines = table(["ID", "STATUS", "NOTE"], [["1", "sent", "ok"], ["12", "dead", "a long error text"]])
    assert lines == ["ID  STATUS  NOTE", "1   sent    ok", "12  dead    a long error text"]
    cut = table(["ID", "NOTE"], [["1", "a long error text"]], width=12)
    assert cut == ["ID  NOTE", "1   a long …"]


def test_list_commands_print_a_header_and_aligned_columns(tmp_path: Path) -> None:
    with_contacts(tmp_path, "Lan", "Nguyễn Thị Minh Khai")
    listed = run("records", "list", "contact", tmp_path, color=False).output.splitlines()
    assert listed == [
        "RECORD     STAGE  VERSION  FIELDS",
        'contact/1  -      1        {"full_name": "Lan"}',
        'contact/2  -      1        {"full_name": "Nguyễn Thị Minh Khai"}',
        "2 records",
    ]
    for words, header in [
        (("runs", "list"), "RUN  AUTOMATION  RECORD  STATUS  AT NODE  UPDATED"),
        (("outbox", "list"), "ID  STATUS  CREATED  CHANNEL  ACTION  RECIPIENT  RECORD  LAST ERROR"),
        (("history",), "   VERSION"),
    ]:
        output = run(*words, tmp_path, color=False).output
        assert output.splitlines()[0].startswith(header), (words, output)
    history = run("history", tmp_path, color=False).output.splitlines()
    assert history[1].startswith("*  ") and history[0].index("APPLIED") == history[1].index("2026-03-10")


def test_a_terminal_cuts_long_lines_to_its_width_a_pipe_keeps_them(tmp_path: Path) -> None:
    long_name = "Nguyễn " * 30
    with_contacts(tmp_path, long_name)
    code, shown = in_terminal("records", "list", "contact", tmp_path, columns=60)
    row = next(line for line in shown.splitlines() if line.startswith("contact/1"))
    assert code == 0 and len(row) == 60 and row.endswith("…"), shown
    whole = piped("records", "list", "contact", tmp_path)
    assert long_name.strip() in whole.stdout and "…" not in whole.stdout


# progress


def test_progress_shows_on_a_terminal_only(tmp_path: Path) -> None:
    code, shown = in_terminal("validate", ROOT / "examples" / "helpdesk")
    assert code == 0 and "files read: " in shown and "\x1b[2K" in shown, shown
    out = piped("validate", ROOT / "examples" / "helpdesk")
    assert out.returncode == 0 and "files read" not in out.stdout + out.stderr
    code, shown = in_terminal("validate", ROOT / "examples" / "helpdesk", "--format", "json")
    assert code == 0 and "files read" not in shown and "\x1b[2K" not in shown, shown
    with (tmp_path / "out.txt").open("w") as redirected:  # stderr on the terminal, stdout to a file
        code, shown = in_terminal("validate", ROOT / "examples" / "helpdesk", stdout=redirected.fileno())
    assert code == 0 and "files read" not in shown and shown == "", shown
    assert ": valid: " in (tmp_path / "out.txt").read_text()


def test_care_forecast_shows_its_progress_on_a_terminal_only(tmp_path: Path) -> None:
    records = tmp_path / "contacts.yaml"
    records.write_text(
        "".join(
            f'- {{object: contact, id: {i}, fields: {{full_name: Khach {i}, phone: "09120{i:05}", '
            f'birthday: "1990-01-{i % 28 + 1:02}", status: active}}}}\n'
            for i in range(50)
        ),
        encoding="utf-8",
    )
    forecast = ("care", "forecast", "sinh-nhat-lien-he", ROOT / "examples" / "birthday-care", "--from", "2027-01-01")
    code, shown = in_terminal(*forecast, "--records", records)
    assert code == 0 and "care forecast sinh-nhat-lien-he: firings checked: " in shown, shown
    assert "# 50 firings for 50 records" in shown
    out = piped(*forecast, "--records", records)
    assert out.returncode == 0 and "firings checked" not in out.stdout + out.stderr
    code, shown = in_terminal(*forecast, "--records", records, "--format", "json")
    assert code == 0 and "firings checked" not in shown


# completion


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_flowctl(shell: str) -> None:
    result = run("completion", shell, color=False)
    assert result.exit_code == 0 and "_FLOWCTL_COMPLETE" in result.output and "flowctl" in result.output
    assert len(result.output.splitlines()) > 5


def test_completion_completes_commands_and_options() -> None:
    env = clean_env(_FLOWCTL_COMPLETE="bash_complete", COMP_WORDS="flowctl outbox list --st", COMP_CWORD="3")
    assert piped(env=env).stdout.split() == ["plain,--status"]
    env = clean_env(_FLOWCTL_COMPLETE="bash_complete", COMP_WORDS="flowctl comp", COMP_CWORD="1")
    assert piped(env=env).stdout.split() == ["plain,completion"]
    unknown = run("completion", "tcsh")
    assert unknown.exit_code == 2


def test_replay_shows_its_progress_on_a_terminal_only(tmp_path: Path) -> None:
    with_contacts(tmp_path, "Lan", "Minh")
    code, shown = in_terminal("replay", tmp_path, "--since", "2026-03-01", "--until", "2026-03-20")
    assert code == 0 and "replay: changes run: " in shown and "2 changes" in shown, shown
    out = piped("replay", tmp_path, "--since", "2026-03-01", "--until", "2026-03-20")
    assert out.returncode == 0 and "changes run" not in out.stdout + out.stderr and "2 changes" in out.stdout
