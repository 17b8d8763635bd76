"""The daemon's fetch queue: pending fetches of webhook Sources, sent through the outbox.

A webhook Source with ``fetch:`` does not fetch inside the request: the handler stores each event
as an outbox row on the channel ``fetch:<source>`` and answers 202 (``sources.fetch`` says why:
Bitrix24 does not re-send an event its handler failed to take). The deliverer sends those rows
with a :class:`FetchSender`, as it sends messages: durably, retried with backoff and jitter after
a timeout, a 5xx or a rate limit, up to ``retries`` + 1 attempts, and dead-lettered on a permanent
failure (``Not found``) or the last attempt, where operators see it (``flowctl outbox``, the
console) and can retry it. Only a complete fetched record is mapped and handed to ingest; the row
is marked sent after the change is stored, and the change's idempotency key (the map's event id,
else the row's key) makes a crash in between store it once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from flowctl.channels import Unconfigured
from flowctl.channels.base import PermanentFailure, Receipt, Sender, TemporaryFailure
from flowctl.ports import Clock, OutboxRow
from flowctl.runtime.daemon.ingest import Ingest
from flowctl.sources.checks import check_change
from flowctl.sources.errors import RequestError
from flowctl.sources.fetch import CHANNEL_PREFIX, FetchFailed
from flowctl.sources.webhooks import WebhookSource
from flowctl.spec import model as m

log = logging.getLogger(__name__)
STORE_SECONDS = 30.0  # how long a fetched change may wait for ingest before the row is retried


class FetchSender:
    """Fetches one pending row's record, maps it and stores the change; thread-safe."""

    def __init__(self, source: WebhookSource, bundle: m.Bundle, ingest: Ingest, clock: Clock) -> None:
        assert source.fetcher is not None
        self.source = source
        self.fetcher = source.fetcher
        self.bundle = bundle
        self.ingest = ingest
        self.clock = clock
        self.max_attempts = self.fetcher.retries + 1
        self.timeout = self.fetcher.timeout

    def send(self, row: OutboxRow) -> Receipt:
        payload: Mapping[str, Any] = row.payload
        try:
            fetched = asyncio.run(self.fetcher.fetch(payload.get("params") or {}, retries=0))
        except FetchFailed as exc:
            if exc.transient:
                raise TemporaryFailure(exc.message) from None
            raise PermanentFailure(exc.message) from None
        item, headers = payload.get("payload"), payload.get("headers") or {}
        if isinstance(item, list):  # changes() would read it as a delivery of several items
            raise PermanentFailure("a pending fetch holds one event, not a list")
        try:
            changes = self.source.changes(item, headers, self.clock.now(), self.bundle.objects, [fetched])
        except RequestError as exc:
            raise PermanentFailure(f"the fetched record does not map: {exc.message}") from None
        # without an event id the change is keyed by the row, so a resend after a crash stores it once
        keyed = f"{self.source.name}:"
        changes = [c if c.idempotency_key.startswith(keyed) else replace(c, idempotency_key=row.key) for c in changes]
        problems = [p for change in changes for p in check_change(self.bundle, change)]
        if problems:
            raise PermanentFailure("the fetched record does not fit: " + "; ".join(problems))
        try:
            results = [future.result(timeout=STORE_SECONDS) for future in self.ingest.submit_many(changes)]
        except Exception as exc:  # noqa: BLE001 - the store did not take it: fetch again later
            raise TemporaryFailure(f"the fetched change was not stored: {type(exc).__name__}") from None
        return Receipt(f"stored as change {', '.join(str(r.seq) for r in results)}")


def fetch_senders(bundle: m.Bundle, env: Mapping[str, str], ingest: Ingest, clock: Clock) -> dict[str, Sender]:
    """A sender for the pending fetches of every webhook Source with ``fetch:``, by channel name
    (``fetch:<source>``); one whose ``${ENV}`` is unset holds its rows instead of failing them."""
    senders: dict[str, Sender] = {}
    for source in bundle.sources.values():
        if source.type != "webhook" or source.fetch is None:
            continue
        channel = CHANNEL_PREFIX + source.name
        try:
            built = WebhookSource(source, env)
        except Exception as exc:  # noqa: BLE001 - logged; its rows wait for a working configuration
            log.error("webhook source %s cannot fetch: %s", source.name, exc)
            senders[channel] = Unconfigured(f"channel {channel}: webhook source {source.name} is misconfigured")
            continue
        why = built.fetcher.misconfigured if built.fetcher else ""
        # "channel …" as the channels' holds say it: the deliverer releases those once configured
        senders[channel] = (
            Unconfigured(f"channel {channel}: {why}") if why else FetchSender(built, bundle, ingest, clock)
        )
    return senders
