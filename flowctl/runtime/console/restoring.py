"""The console's one write on records: restoring a deleted record from the recycle bin page.

It goes through the same ingest as ``POST /v1/records/{object}/{id}/restore``, so the worker runs
the record's ``on: restored`` automations exactly as for the API. The change's key names the
record's deleted version: a double click, or a second operator on the same page, restores once.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from flowctl.ports import NewChange
from flowctl.runtime.api.deadlines import COMMIT_TIMEOUT
from flowctl.runtime.api.readback import restorable
from flowctl.runtime.api.view import ServiceView
from flowctl.sources.checks import check_change
from flowctl.sources.errors import Invalid, Unavailable


async def restore(svc: ServiceView, object: str, record_id: str) -> bool:
    """Queue the restore of ``object`` ``record_id``; False when the same restore was already queued.
    NotFound (purged or never written), Conflict (not deleted), Unavailable (the store did not take it)."""
    record = await run_in_threadpool(restorable, svc.store, object, record_id)
    change = NewChange(
        object=object,
        record_id=record_id,
        op="restore",
        idempotency_key=f"console:restore:{object}:{record_id}:v{record.version}",
        source="console",
        received_at=svc.clock.now(),
    )
    problems = check_change(svc.bundle, change)
    if problems:
        raise Invalid.of(problems)
    waiter = svc.ingest.submit_async(change)
    try:
        result = await asyncio.wait_for(asyncio.shield(waiter), COMMIT_TIMEOUT)
    except TimeoutError:
        if svc.ingest.cancel(waiter):
            raise Unavailable("the restore was not stored: the store did not take it in time; try again") from None
        result = await waiter  # a commit already holds it: its real outcome
    except Exception as exc:  # noqa: BLE001 - StoreUnavailable or anything else: not stored
        raise Unavailable(f"the restore was not stored ({exc}); try again") from None
    return not result.duplicate
