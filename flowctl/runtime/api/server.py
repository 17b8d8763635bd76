"""The HTTP server the daemon serves its app with: uvicorn, configured for the daemon.

uvicorn's own signal handling re-raises SIGTERM after serving, which would kill the process before
the workers drain, so the server here leaves signals to ``runtime.compose.run``. Keep-alive is
longer than uvicorn's 5 s (clients and proxies that pool connections would otherwise reuse one the
server just closed and see "connection reset"), and request heads are bounded (431) before any
handler, token check included (see ``api.heads``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from flowctl.runtime.api.heads import server_options


class Server(uvicorn.Server):
    """uvicorn's server without its own signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: ASGIApp, host: str, port: int) -> Server:
    """A server for ``app`` on ``host:port``; ``run()`` serves until ``should_exit`` is set."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through the daemon's handler (JSON with --log-format json)
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=75,
        **server_options(),
    )
    return Server(config)
