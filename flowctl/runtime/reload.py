"""Switch a running daemon to the version ``flowctl apply`` (or ``rollback``) made current.

The store is the source of truth: ``pick_up`` compares its current version with the one the
service runs, rebuilds the new one from its stored files, validates it and swaps the engine.
Runs already started keep the engine of their version (``Engines.for_version``); new inputs
use the new one. A version that cannot be rebuilt or does not validate is logged and skipped,
never half-applied: the service keeps running the version it had.
"""

from __future__ import annotations

import logging
from typing import Any

from flowctl.engine.core import Engine

log = logging.getLogger("flowctl.reload")


def pick_up(service: Any) -> bool:
    """Run the store's current version if it is not the one ``service`` runs; True if it switched."""
    from flowctl.gitops.versions import NotRebuildable, from_version

    current = service.store.current_version()
    if current is None or current.id == service.version:
        return False
    if getattr(service, "_refused_version", None) == current.id:
        return False  # already logged; wait for the next deploy
    try:
        snapshot = from_version(current)
    except NotRebuildable as exc:
        log.warning("not switching to version %s: %s", current.id, exc)
        service._refused_version = current.id
        return False
    loaded = snapshot.loaded
    if not loaded.ok or loaded.bundle is None:
        for issue in loaded.errors[:20]:
            log.error("version %s: %s", current.id, issue)
        log.error("not switching to version %s: it does not validate; still running %s", current.id, service.version)
        service._refused_version = current.id
        return False
    bundle = loaded.bundle
    engine = Engine(bundle, current.id)
    _refresh_senders(service, bundle)
    _refresh_policies(service, bundle)
    service.engines.use(engine)
    service.bundle = bundle
    service.loaded = loaded
    previous, service.version = service.version, current.id
    log.info("switched from version %s to %s (%s)", previous, current.id, current.commit or "no commit")
    return True


def _refresh_policies(service: Any, bundle: Any) -> None:
    """Sending policies follow the new channels (rate buckets restart; held rows are re-checked)."""
    deliverer = getattr(service, "deliverer", None)
    if deliverer is None:
        return
    from flowctl.runtime import policies

    deliverer.policies = {name: ch.policy for name, ch in bundle.channels.items() if policies.active(ch.policy)}
    deliverer.timezone = bundle.config.timezone
    deliverer.in_flight = max(1, bundle.config.limits.sends_in_flight)


def _refresh_senders(service: Any, bundle: Any) -> None:
    """New or changed channels: update the senders dict in place (the deliverer holds it);
    senders of removed channels stay until the outbox rows queued for them are delivered."""
    senders = getattr(service, "senders", None)
    if not isinstance(senders, dict):
        return
    from flowctl.channels import build_senders

    try:
        fresh = build_senders(bundle, service.env, log_stream=getattr(service, "log_stream", None))
    except Exception:
        log.exception("channels of the new version could not be built; keeping the previous ones")
        return
    senders.update(fresh)
