"""What every handler of the API shares: the current access, error answers, counting and timing,
reads off the event loop, and the write path (check, store through Ingest, answer).

Writes are accepted asynchronously but durably: a handler validates the request against the
current configuration, hands the ``NewChange`` to ``Ingest`` and answers ``202`` only after the
group commit that stored it, with the change's ``seq``. The worker processes it later. An
``Idempotency-Key`` makes a write repeatable (``api.idempotency``); a write the store does not take
in time fails with 503 and is not stored (``api.deadlines``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowctl.ports import AppendResult, NewChange
from flowctl.runtime.api.access import Access, access_of, authorize
from flowctl.runtime.api.deadlines import COMMIT_TIMEOUT, CommitTimeout, Deadlines
from flowctl.runtime.api.idempotency import API_KEYS, AutoKeys, conflicts, given_key
from flowctl.runtime.api.openapi import Role
from flowctl.runtime.api.readback import processed_json, read_record, wait_processed
from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.daemon.ingest import unavailable
from flowctl.sources.checks import check_change, fingerprint
from flowctl.sources.errors import Conflict, InternalError, Invalid, RequestError, Unavailable
from flowctl.spec.links import refs_of

log = logging.getLogger("flowctl.http")

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


def error_response(exc: RequestError) -> Response:
    headers = dict(exc.headers)
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="flowctl"')
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def accepted(result: AppendResult) -> Response:
    duplicate = "true" if result.duplicate else "false"
    body = f'{{"accepted":true,"seq":{result.seq},"duplicate":{duplicate}}}'
    return Response(body, status_code=202, media_type="application/json")


class ApiCore:
    """The plumbing of the handlers, bound to one service; ``HttpApi`` adds the handlers."""

    def __init__(self, svc: ServiceView, *, commit_timeout: float = COMMIT_TIMEOUT) -> None:
        self.svc = svc
        self.commit_timeout = commit_timeout
        metrics = svc.metrics
        self.requests = metrics.counter(
            "flowctl_http_requests_total", "HTTP requests answered, by route and status.", ("route", "status")
        )
        self.latency = metrics.histogram("flowctl_http_request_seconds", "Time to answer an HTTP request.", ("route",))
        self.accepted = metrics.counter(
            "flowctl_changes_accepted_total", "Record changes and events stored for processing.", ("source",)
        )
        self.duplicates = metrics.counter(
            "flowctl_changes_duplicate_total", "Writes whose idempotency key was already stored.", ("source",)
        )
        self._access: Access | None = None
        self._deadlines = Deadlines(commit_timeout, getattr(svc.ingest, "cancel", None))
        self._keys = AutoKeys()  # a write without Idempotency-Key gets a key of its own

    def access(self) -> Access:
        """What the current configuration lets in, rebuilt when a reload replaced the bundle."""
        bundle = self.svc.bundle
        current = self._access
        if current is None or current.bundle is not bundle:
            current = self._access = access_of(bundle, self.svc.env)
        return current

    def guard(self, roles: Mapping[str, Role | None], handler: Handler) -> Handler:
        """``handler`` called only for a request whose token has the role ``roles`` names for its
        method (upper case), with the :class:`~flowctl.runtime.api.access.Principal` on
        ``request.state.principal``; a method whose role is None is open (and gets no principal)."""
        if all(role is None for role in roles.values()):
            return handler
        access = self.access

        async def guarded(request: Request) -> Response:
            role = roles.get(request.method)
            if role is not None:
                request.state.principal = authorize(request, access(), role)
            return await handler(request)

        return guarded

    def instrument(self, template: str, handler: Handler) -> Handler:
        """``handler`` answering errors in the error shape, counted and timed per route."""
        requests, latency = self.requests, self.latency

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except RequestError as exc:
                response = error_response(exc)
            except Exception:
                log.exception("%s %s failed", request.method, template)
                response = error_response(InternalError("internal error; see the daemon's log"))
            route = f"{request.method} {template}"
            latency.observe(time.perf_counter() - started, route=route)
            requests.inc(route=route, status=str(response.status_code))
            return response

        return endpoint

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await run_in_threadpool(fn, *args)
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is "try again later"
            # an outage is logged once by the daemon's threads, not once per request
            (log.debug if unavailable(exc) else log.warning)("store read failed: %s", exc)
            raise Unavailable("the store cannot be read right now; retry later") from None

    async def _check_links(self, changes: list[NewChange]) -> None:
        """A ref field must name a live record, as the last acknowledged write left it (one still
        queued counts, and so does one the same delivery writes): 422 naming the field and the id
        otherwise."""
        problems: list[str] = []
        written = {(c.object, c.record_id) for c in changes if c.op in ("put", "patch")}
        for change in changes:
            if change.op not in ("put", "patch"):
                continue
            for name, object in refs_of(self.svc.bundle.objects.get(change.object)).items():
                value = change.fields.get(name)
                if value in (None, "") or isinstance(value, bool) or not isinstance(value, str | int):
                    continue  # no link, or a value of the wrong type (check_change says so)
                if (object, str(value)) in written:
                    continue
                record, _ = await self._read(read_record, self.svc.store, object, str(value))
                if record is None:
                    problems.append(f"field '{name}' links to {object} {value}, which does not exist or is deleted")
        if problems:
            raise Invalid.of(problems)

    async def _check_moves(self, changes: list[NewChange]) -> None:
        """Moves are refused (422) when the stored record may not enter the stage. A record not
        stored yet (its creation may still be queued) is checked again by the worker. Links are
        checked with them (``_check_links``)."""
        await self._check_links(changes)
        problems: list[str] = []
        for change in changes:
            if change.op != "move":
                continue
            record = await self._read(self.svc.store.record, change.object, change.record_id)
            if record is not None and not record.deleted:
                reason = self.svc.refuse_move(record, change.stage, change.pipeline)
                if reason:
                    problems.append(reason)
        if problems:
            raise Invalid.of(problems)

    async def _commit(self, changes: list[NewChange]) -> list[AppendResult]:
        """Store ``changes`` through Ingest; returns after the commit, or raises Unavailable (503)."""
        try:
            waiters = [self.svc.ingest.submit_async(change) for change in changes]
            for waiter in waiters:
                self._deadlines.watch(waiter)
            # one change (the API): no gather, which costs a task per waiter
            results = [await waiters[0]] if len(waiters) == 1 else list(await asyncio.gather(*waiters))
        except CommitTimeout:
            raise Unavailable(
                f"the write was not stored: the store did not take it within {self.commit_timeout:g} s; "
                "retry with the same Idempotency-Key",
                retry_after=5,
            ) from None
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - StoreUnavailable or anything else: not stored, retry
            # Ingest logs an outage once, not once per request
            (log.debug if unavailable(exc) else log.warning)("write not stored: %s", exc)
            raise Unavailable("the store could not save the write; retry with the same Idempotency-Key") from None
        for change, result in zip(changes, results, strict=True):
            if not conflicts(change, result):  # a conflict is answered 409: neither stored nor a repeat
                (self.duplicates if result.duplicate else self.accepted).inc(source=change.source)
        return results

    async def _write(
        self, change: NewChange, access: Access, explicit_key: bool, wait: float | None = None
    ) -> Response:
        problems = check_change(access.bundle, change)
        if problems:
            raise Invalid.of(problems)
        await self._check_moves([change])
        if explicit_key:  # the store keeps it with the change: a reuse is judged after a restart too
            change = replace(change, fingerprint=fingerprint(change))
        (result,) = await self._commit([change])
        if conflicts(change, result):
            given = change.idempotency_key.removeprefix(API_KEYS)
            raise Conflict(
                f"Idempotency-Key '{given}' was already used for a different request (change "
                f"{result.seq}); use a new key for a new write"
            )
        if wait is None:
            return accepted(result)
        return await self._after_waiting(change, result, wait)

    async def _after_waiting(self, change: NewChange, result: AppendResult, seconds: float) -> Response:
        """``Prefer: wait=N``: 200 with the outcome once the change is processed, else the 202."""
        store = self.svc.store
        applied = {"Preference-Applied": f"wait={seconds:g}"}
        done = await wait_processed(lambda seq: self._read(store.change, seq), result.seq, seconds)
        if done is None:
            response = accepted(result)
            response.headers.update(applied)
            return response
        record, pending = await self._read(read_record, store, change.object, change.record_id)
        runs = await self._read(store.list_runs, 100, "", change.object, change.record_id)
        return JSONResponse(processed_json(done, result.duplicate, record, pending, runs), headers=applied)

    def _change(self, request: Request, **values: Any) -> tuple[NewChange, bool]:
        given = given_key(request)
        change = NewChange(
            idempotency_key=self._keys.key(given), source="api", received_at=self.svc.clock.now(), **values
        )
        return change, bool(given)
