"""The daemon's settings: one frozen value built from ``flowctl run``'s options and the Config.

Everything the composition root (``runtime.compose``) needs to know about how to run is here, with
the Config's defaults already applied and paths resolved, so that nothing below the CLI reads
``os.environ`` or the command line itself, and a test can run the daemon from a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flowctl.spec.config import Loaded

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_RETRY_BASE = 2.0


def resolve_database(url: str, root: Path) -> str:
    """``sqlite:///flowctl.db`` is relative to the config directory, as the operator expects."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite:///:memory:":
        return prefix + str((root / url[len(prefix) :]).resolve())
    return url


def env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of seconds from the environment variable ``name`` (unset or empty: ``default``)."""
    return float(env.get(name, str(default)) or default)


class BadListen(ValueError):
    """The listen address is not ``host:port``."""


@dataclass(frozen=True, slots=True)
class Settings:
    """How to run the daemon on one loaded configuration directory."""

    directory: Path  # as given on the command line, for messages
    loaded: Loaded
    database: str  # the store's URL, resolved (a relative SQLite path is relative to the directory)
    host: str
    port: int
    watch: bool = False  # reload when the directory's files change
    processes: int = 2  # 2: the engine runs in a child process; 1: everything in this one
    log_format: str = "text"
    log_level: str = "info"
    ui: bool = True  # serve the console at /ui/ (flowctl run --no-ui: False)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def root(self) -> Path:
        return self.loaded.root

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def lease_seconds(self) -> float:
        """FLOWCTL_LEASE_SECONDS: how long a claim lasts without a heartbeat; a dead replica's work
        goes back to the queue after it (default 60)."""
        return env_seconds(self.env, "FLOWCTL_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)

    @property
    def retry_base(self) -> float:
        """FLOWCTL_RETRY_BASE: seconds before the first retry of a failed delivery (default 2; it doubles)."""
        return env_seconds(self.env, "FLOWCTL_RETRY_BASE", DEFAULT_RETRY_BASE)

    @classmethod
    def of(
        cls,
        directory: Path,
        loaded: Loaded,
        *,
        database: str = "",
        listen: str = "",
        watch: bool = False,
        processes: int = 2,
        log_format: str = "text",
        log_level: str = "info",
        ui: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> Settings:
        """The settings of ``flowctl run``'s options over ``loaded``'s Config (its database and listen
        address when the options leave them empty). Raises :class:`BadListen`."""
        assert loaded.bundle is not None
        config = loaded.bundle.config
        address = listen or config.listen
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise BadListen(f"'{address}' is not host:port")
        return cls(
            directory=directory,
            loaded=loaded,
            database=resolve_database(database or config.database, loaded.root),
            host=host,
            port=int(port),
            watch=watch,
            processes=processes,
            log_format=log_format,
            log_level=log_level,
            ui=ui,
            env=dict(os.environ if env is None else env),
        )
