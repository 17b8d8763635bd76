"""A webhook Source's ``fetch:`` (E135–E136): where its secret comes from, and who reads it.

The URL of a REST webhook is a credential: Bitrix24's inbound webhook puts its token in the path
(``https://<portal>.bitrix24.vn/rest/<user>/<token>/crm.deal.get.json``), so the URL, or at least
its secret part, must come from an ``${ENV}`` reference (E135). A map that reads ``fetched`` needs
a ``fetch:`` to fill it (E136): without one every delivery would be refused at run time.
Messages never repeat a URL: the validate output ends up in CI logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import leaves, value_span
from flowctl.spec.issues import Issue, error

#: ``/rest/<user id>/<token>`` written out: a Bitrix24 inbound webhook's secret in the text.
LITERAL_TOKEN = re.compile(r"/rest/\d+/[A-Za-z0-9]{6,}")
READS_FETCHED = re.compile(r"\bfetched\b")
URL_HINT = (
    'keep the webhook URL in the environment: url: "${B24_WEBHOOK_URL}crm.deal.get.json" with '
    "B24_WEBHOOK_URL=https://<portal>.bitrix24.vn/rest/<user>/<token>/ set where flowctl runs"
)

FETCH_HINT = (
    'add fetch: {url: "${B24_WEBHOOK_URL}crm.deal.get.json", params: {id: "{{ payload.data.FIELDS.ID }}"}} '
    "or read the delivery itself (payload.…)"
)


def _literal_part(url: str) -> str:
    """The text of ``url`` outside its ``${…}`` references."""
    return re.sub(r"\$\{[^}]*\}", "", url)


def check_source_fetch(bundle: m.Bundle) -> Iterator[Issue]:
    """E135–E136: the fetch URL's secret from ``${ENV}``; ``fetched`` read only with a ``fetch:``."""
    for source in bundle.sources.values():
        owner = f"source '{source.name}'"
        fetch = source.fetch
        if fetch is not None and fetch.url:
            if "${" not in fetch.url:
                yield error(
                    "E135",
                    f"the fetch url of {owner} is written out; it carries the REST webhook's secret",
                    value_span(source.where, "fetch", "url"),
                    URL_HINT,
                )
            elif LITERAL_TOKEN.search(_literal_part(fetch.url)):
                yield error(
                    "E135",
                    f"the fetch url of {owner} writes out a webhook token (/rest/<user>/<token>)",
                    value_span(source.where, "fetch", "url"),
                    URL_HINT,
                )
        if fetch is None:
            for path, value in leaves(source.map):
                if isinstance(value, str) and READS_FETCHED.search(value):
                    where = ".".join(str(p) for p in ("map", *path))
                    yield error(
                        "E136",
                        f"{where} of {owner} reads fetched, but the source has no fetch:",
                        value_span(source.where, "map", *path),
                        FETCH_HINT,
                    )
