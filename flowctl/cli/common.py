"""Helpers shared by commands: loading a directory, the directory argument, and printing times.

Every time a command prints, in text or JSON, goes through ``iso``: ISO 8601 with its offset, in
the Config's ``timezone`` (UTC, as ``+00:00``, when the directory has no Config), so a time read
from one command can be pasted into another (``replay --since``) and means the same instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def load_or_exit(directory: Path, *, allow_warnings: bool = True) -> Any:
    """Load and validate ``directory``; print every error and exit 1 when it is invalid."""
    from flowctl.spec.config import (
        load_bundle,  # lazy: start-up time (commands that only read the store skip jsonschema and jinja2)
    )

    if not directory.exists():
        raise click.BadParameter(f"no such file or directory: {directory}", param_hint="DIR")
    loaded = load_bundle(directory)
    if not loaded.ok:
        for issue in loaded.errors:
            click.echo(str(issue), err=True)
        click.echo(f"{directory}: invalid: {len(loaded.errors)} errors; run 'flowctl validate {directory}'", err=True)
        sys.exit(1)
    return loaded


def directory_argument(help_text: str = "Config directory (default: .), for its database.") -> Callable[[F], F]:
    """``[DIR]`` as the last positional argument, with ``--dir DIR`` kept as a synonym for scripts
    written before; giving both is a usage error (exit 2). The command receives ``directory``."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, directory: Path | None, dir_option: Path | None, **kwargs: Any) -> Any:
            return func(*args, directory=pick_directory(directory, dir_option), **kwargs)

        option = click.option(
            "--dir",
            "dir_option",
            type=click.Path(path_type=Path),
            metavar="DIR",
            help=f"{help_text} Same as the DIR argument, kept for older scripts.",
        )
        argument = click.argument("directory", required=False, metavar="[DIR]", type=click.Path(path_type=Path))
        return argument(option(wrapper))  # type: ignore[return-value]

    return decorate


def pick_directory(argument: Path | None, option: Path | None) -> Path:
    if argument is not None and option is not None:
        raise click.UsageError(f"give the directory once: as DIR ({argument}) or as --dir ({option}), not both")
    return argument or option or Path()


def config_of(directory: Path) -> Any:
    """The Config under ``directory`` (read without the semantic checks), or None."""
    from flowctl.spec.config import (
        load_bundle,  # lazy: start-up time (commands that only read the store skip jsonschema and jinja2)
    )

    if not directory.is_dir():
        return None
    loaded = load_bundle(directory, semantic=False)
    return loaded.bundle.config if loaded.bundle is not None else None


def zone_of(config: Any) -> tzinfo:
    """The zone times are printed in: the Config's ``timezone``, else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = config.timezone if config is not None else ""
    try:
        return ZoneInfo(name) if name and name != "UTC" else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC  # validate reports it; printing in UTC is still right


def config_zone(directory: Path) -> tzinfo:
    return zone_of(config_of(directory))


def iso(value: datetime | str, zone: tzinfo, *, seconds: bool = False) -> str:
    """``value`` in ``zone`` as ISO 8601 with its offset (``2026-03-10T10:00:00+07:00``).
    Strings are ISO times as the store keeps them (a bare one is UTC); ``seconds`` drops the
    fraction, for text people read."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).isoformat(timespec="seconds" if seconds else "auto")


def iso_or_none(value: datetime | str | None, zone: tzinfo) -> str | None:
    return None if value is None or value == "" else iso(value, zone)
