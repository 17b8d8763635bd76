"""One ``httpx.Client`` per sending thread, for the channels that call HTTP APIs.

A pool shared between threads can lose the answer to a message it sent and send it twice
(encode/httpcore#1110); a pool of one's own per thread has no such race. The deliverer's lanes
are a few long-lived threads, so the extra connections are few.
"""

from __future__ import annotations

import threading

import httpx


class ThreadClients:
    """Hands each thread its own client (made on its first use); :meth:`close` closes them all."""

    def __init__(self, timeout: float, limits: httpx.Limits | None = None) -> None:
        self.timeout = timeout
        self._limits = limits or httpx.Limits()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=self.timeout, follow_redirects=False, limits=self._limits)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
