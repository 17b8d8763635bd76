"""The lines ``flowctl run`` prints once it has started: what it loaded, where it stores and listens."""

from __future__ import annotations

from flowctl.runtime.daemon.service import Service


def summary(service: Service, listen: str, database: str, *, ui: bool = True) -> str:
    bundle = service.bundle
    counts = {
        "flows": len(bundle.flows),
        "pipelines": len(bundle.pipelines),
        "care processes": len(bundle.care),
        "object types": len(bundle.objects),
        "templates": len(bundle.templates),
        "channels": len(bundle.channels),
        "sources": len(bundle.sources),
    }
    parts = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    channels = ", ".join(sorted(service.senders)) or "log"
    return (
        f"flowctl: loaded {service.loaded.documents} documents from {service.root} ({parts or 'nothing'}); "
        f"config version {service.version}\n"
        f"flowctl: store {_mask(database)}; channels: {channels}\n"
        f"flowctl: listening on http://{listen} (GET /healthz, /readyz, /metrics, /openapi.json)"
        + (f"\nflowctl: console on http://{listen}/ui/" if ui else "")
    )


def _mask(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
