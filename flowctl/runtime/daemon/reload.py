"""Switch a running daemon to the version ``flowctl apply`` (or ``rollback``) made current.

The store is the source of truth: ``pick_up`` compares its current version with the one the
service runs, rebuilds the new one from its stored files, validates it and swaps the engine.
Runs already started keep the engine of their version (``Engines.for_version``); new inputs
use the new one. A version that cannot be rebuilt or does not validate is logged and skipped,
never half-applied: the service keeps running the version it had.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flowctl.channels import build_senders
from flowctl.engine.core import Engine
from flowctl.gitops.versions import NotRebuildable, from_version
from flowctl.ports import ConfigVersion, Store
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.daemon.fetching import fetch_senders
from flowctl.runtime.daemon.logs import ids
from flowctl.runtime.delivery import policies
from flowctl.spec.config import Loaded

log = logging.getLogger("flowctl.reload")


class Unusable(Exception):
    """A stored version that cannot be run: stored without its files, or it does not validate."""

    def __init__(self, version: str, why: str, issues: tuple[str, ...] = ()) -> None:
        super().__init__(f"version {version} {why}")
        self.version = version
        self.issues = issues


def build(version: ConfigVersion) -> Loaded:
    """The validated configuration of a stored version; raises :class:`Unusable`."""
    try:
        loaded = from_version(version).loaded
    except NotRebuildable:
        raise Unusable(version.id, "was stored without its files, so it cannot be rebuilt") from None
    if not loaded.ok or loaded.bundle is None:
        raise Unusable(version.id, "does not validate", tuple(str(issue) for issue in loaded.errors[:20]))
    return loaded


def load_deployed(store: Store, wanted: str) -> tuple[Loaded, str]:
    """The configuration the engine process runs: stored version ``wanted`` (the one the daemon
    runs), else the current one. Never the working directory, which may hold an unsaved or
    invalid edit. Raises :class:`Unusable` (the last reason) when neither can be run, and the
    store's errors when it cannot be read."""
    found = store.version(wanted) if wanted else None
    current = store.current_version()
    problem: Unusable | None = None
    candidates = {v.id: v for v in (found, current) if v is not None}  # by id: the same one once
    for version in candidates.values():
        try:
            return build(version), version.id
        except Unusable as exc:
            problem = exc
    raise problem or Unusable(wanted or "(none)", "is not stored: nothing was deployed yet")


def pick_up(service: Any) -> bool:
    """Run the store's current version if it is not the one ``service`` runs; True if it switched."""
    current = service.store.current_version()
    if current is None or current.id == service.version:
        return False
    if getattr(service, "_refused_version", None) == current.id:
        return False  # already logged; wait for the next deploy
    try:
        loaded = build(current)
    except Unusable as exc:
        for issue in exc.issues:
            log.error("version %s: %s", current.id, issue)
        log.error("not switching to %s; still running %s", exc, service.version)
        service._refused_version = current.id
        return False
    assert loaded.bundle is not None
    bundle = loaded.bundle
    engine = Engine(bundle, current.id)
    _refresh_senders(service, bundle)
    _refresh_policies(service, bundle)
    service.engines.use(engine)
    service.bundle = bundle
    service.loaded = loaded
    previous, service.version = service.version, current.id
    log.info(
        "switched from version %s to %s (%s)",
        previous,
        current.id,
        current.commit or "no commit",
        extra=ids(config_version=current.id),
    )
    release_unused(service)
    return True


def release_unused(service: Any) -> list[str]:
    """Let go of the engines of versions no active run and no care pin (yesterday's local day or
    later) uses: without this each reload keeps a whole bundle more. A store that cannot say
    (unreachable) keeps them all until the next switch."""
    engines = service.engines
    if len(engines.by_version) <= 1:
        return []
    now = (getattr(service, "clock", None) or SystemClock()).now()
    since = (now.astimezone(engines.current.tz).date() - timedelta(days=1)).isoformat()
    try:
        keep = service.store.versions_in_use(since)
    except Exception as exc:  # noqa: BLE001 - keeping an engine longer is harmless
        log.warning("could not tell which versions open runs use (%s); keeping their engines for now", exc)
        return []
    dropped: list[str] = engines.release(keep)
    if dropped:
        log.info("released the engines of version(s) %s: no open run or care day uses them", ", ".join(dropped))
    return dropped


def _refresh_policies(service: Any, bundle: Any) -> None:
    """Sending policies follow the new channels (rate buckets restart; held rows are re-checked)."""
    deliverer = getattr(service, "deliverer", None)
    if deliverer is None:
        return
    deliverer.policies = {name: ch.policy for name, ch in bundle.channels.items() if policies.active(ch.policy)}
    deliverer.timezone = bundle.config.timezone
    deliverer.in_flight = max(1, bundle.config.limits.sends_in_flight)


def _refresh_senders(service: Any, bundle: Any) -> None:
    """New or changed channels: update the senders dict in place (the deliverer holds it);
    senders of removed channels stay until the outbox rows queued for them are delivered."""
    senders = getattr(service, "senders", None)
    if not isinstance(senders, dict):
        return
    try:
        fresh = build_senders(
            bundle,
            service.env,
            log_stream=getattr(service, "log_stream", None),
            store=getattr(service, "store", None),
            clock=getattr(service, "clock", None),
        )
        ingest = getattr(service, "ingest", None)
        if ingest is not None:  # webhook Sources' pending fetches (runtime.daemon.fetching)
            fresh.update(fetch_senders(bundle, service.env, ingest, service.clock))
    except Exception:
        log.exception("channels of the new version could not be built; keeping the previous ones")
        return
    senders.update(fresh)
