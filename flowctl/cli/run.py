"""``flowctl run``: the daemon on a config directory (SQLite and the log channel by default)."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from flowctl.cli.common import load_or_exit
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.daemon.logs import setup_logging


@click.command(
    "run",
    epilog="""\b
Examples:
  flowctl run                                   # ./ with sqlite:///flowctl.db and the log channel
  flowctl run examples/furniture-store --listen 127.0.0.1:9000
  flowctl run . --db postgresql+psycopg://flowctl@db/flowctl --log-format json

\b
Then, for example:
  curl -X PUT localhost:8080/v1/records/contact/1 -H 'Content-Type: application/json' \\
       -d '{"fields": {"full_name": "Lan", "phone": "0901234567"}}'
  curl localhost:8080/v1/records/contact/1

\b
On start the directory is deployed through the same checks as 'flowctl apply'.
SIGHUP (or --watch) reloads it the same way; 'flowctl apply' from elsewhere
is picked up within seconds. Runs keep the version they started on.
SIGTERM (or Ctrl-C) stops claiming work, finishes what is in flight and exits 0.
With --processes 2 (the default) the engine runs in a child process that
dies with this one and is started again if it exits.""",
)
@click.argument("directory", default=".", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help="Database URL (default: Config's database, else "
              "sqlite:///flowctl.db beside the config).")
@click.option("--listen", default="", help="host:port to listen on (default: Config's listen, 127.0.0.1:8080).")
@click.option("--watch", is_flag=True, help="Reload when the directory's files change (SIGHUP reloads too); "
              "an invalid or refused change is logged and the running version stays.")
@click.option("--processes", type=click.IntRange(1, 2), default=2, show_default=True,
              help="2: the engine (rules, runs, timers) runs in a second process, so the daemon uses two cores; "
              "1: everything in this one process.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def command(directory: Path, database: str, listen: str, watch: bool, processes: int, log_format: str,
            log_level: str) -> None:  # fmt: skip
    """Run the daemon: the HTTP API, the workers, the timers and the outbox delivery."""
    from flowctl.runtime.api.access import listen_allowed
    from flowctl.runtime.api.app import create_app
    from flowctl.runtime.daemon.service import Service, StartRefused, resolve_database, summary
    from flowctl.store import open_store

    setup_logging(log_format, log_level)
    loaded = load_or_exit(directory)
    for warning in loaded.warnings:
        logging.getLogger("flowctl.config").info("%s", warning)
    config = loaded.bundle.config
    url = resolve_database(database or config.database, loaded.root)
    address = listen or config.listen
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"'{address}' is not host:port", param_hint="--listen")
    import os

    from flowctl.channels.base import resolve_env
    from flowctl.channels.env import describe, unset_env

    unset = unset_env(loaded.bundle, os.environ)
    if unset:  # all of them at once, before anything depends on them
        logging.getLogger("flowctl.config").warning(
            "not set in the environment: %s. Until flowctl run is restarted with %s set, the messages of those "
            "channels are held (not sent, not dead-lettered) and those sources do not run",
            describe(unset), "it" if len(unset) == 1 else "them")  # fmt: skip
    token = ""
    if config.api_token:
        try:
            token = resolve_env(config.api_token, os.environ)
        except Exception as exc:
            raise click.ClickException(f"api_token: {exc}") from exc
    refusal = listen_allowed(address, token)
    if refusal:
        raise click.ClickException(refusal)
    from flowctl.runtime.daemon.leases import AnotherDaemon, lock_sqlite

    try:
        lock = lock_sqlite(url)  # held (open) until the process ends
    except AnotherDaemon as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        store = open_store(url)
        if lock is not None:  # the lock proves every earlier daemon on this file is gone: take its work now
            ended = store.expire_leases(SystemClock().now())
            if ended:
                click.echo(f"flowctl: resuming {ended} item(s) a stopped daemon had in hand", err=True)
    except Exception as exc:
        raise click.ClickException(f"cannot open the store {url}: {exc}") from exc
    engine_process = None
    if processes == 2:
        from flowctl.runtime.daemon.engine_process import EngineProcess

        # the child keeps the SQLite lock open: no other daemon starts on the file while it lives
        engine_process = EngineProcess(url, log_format=log_format, log_level=log_level,
                                       keep_fds=(lock.fileno(),) if lock is not None else ())  # fmt: skip
    service = Service(root=loaded.root, loaded=loaded, store=store, watch=watch, engine_process=engine_process)
    try:
        service.start()
    except StartRefused as exc:
        store.close()
        raise click.ClickException(f"{directory} may not replace the deployed configuration: {exc} "
                                   f"(see 'flowctl plan {directory}')") from exc  # fmt: skip
    click.echo(summary(service, address, url), err=True)
    server = make_server(create_app(service), host, int(port))

    def request_exit(signum: int, frame: object) -> None:
        server.should_exit = True  # uvicorn stops accepting, finishes requests in flight

    signal.signal(signal.SIGTERM, request_exit)
    signal.signal(signal.SIGINT, request_exit)
    signal.signal(signal.SIGHUP, lambda signum, frame: service.reload_requested.set())
    try:
        server.run()
    finally:
        service.stop()
        store.close()
        click.echo("flowctl: stopped", err=True)
    if not server.started:
        sys.exit(1)


def make_server(app: Any, host: str, port: int) -> Any:
    """uvicorn's server without its own signal handling: it re-raises SIGTERM after serving, which
    would kill the process before the workers drain. ``flowctl run`` handles the signals itself."""
    import uvicorn

    from flowctl.runtime.api.heads import server_options

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    # keep-alive longer than uvicorn's 5 s: clients and proxies that pool connections would
    # otherwise reuse one the server just closed and see "connection reset"
    # request heads are bounded (431) before any handler, token check included: see runtime.heads
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5, timeout_keep_alive=75, **server_options())  # fmt: skip
    return Server(config)
