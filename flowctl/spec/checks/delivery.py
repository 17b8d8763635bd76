"""Effects that would never leave the machine although they are written to.

W006: a ``webhook`` action (or any action with a ``url``) that names no ``channel:`` goes to
the Channel named ``webhook``, and without one to the built-in ``log`` channel, which prints and
keeps the request and calls nothing: ``dry-run`` shows ``webhook log ${ACCOUNTING_WEBHOOK_URL}``
and the daemon never calls accounting. Naming a channel (even one of type log) is a choice and
is not warned about.
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import action_sites, value_span
from flowctl.spec.dependencies import needs_document
from flowctl.spec.issues import Issue, warning

#: The Channel a webhook without ``channel:`` goes to (engine/actions.py ``MEDIUM``).
WEBHOOK_CHANNEL = "webhook"


def check_webhook_delivery(bundle: m.Bundle) -> Iterator[Issue]:
    """W006: a webhook with a url that would go to the log channel."""
    default = bundle.channels.get(WEBHOOK_CHANNEL)
    if default is not None and default.type != "log":
        return
    for site in action_sites(bundle):
        action = site.action
        if action.channel or not (action.type == "webhook" or action.url):
            continue
        why = (
            f"the Channel '{WEBHOOK_CHANNEL}' is of type log"
            if default is not None
            else f"no Channel is named '{WEBHOOK_CHANNEL}'"
        )
        url = f" {action.url}" if action.url else ""
        span = value_span(action.where, "url") if action.url else value_span(action.where)
        yield warning(
            "W006",
            f"the webhook of {site.owner} goes to the log channel ({why}), so{url} is never called",
            span,
            f"define a Channel '{WEBHOOK_CHANNEL}' of type http (an action's url overrides the channel's), "
            "or name the channel with 'channel:'",
            needs=needs_document("Channel", "*"),
        )
