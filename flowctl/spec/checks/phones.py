"""E072: a Config ``phone_region`` no numbering plan is known for.

Every phone number written without ``+`` and a country code is read in that region; one the
plans do not know (``VM`` for ``VN``) would make the API refuse every such number, so validate
says so first.
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import has_key, value_span
from flowctl.spec.issues import Issue, error
from flowctl.spec.phones import known_regions


def check_phone_region(bundle: m.Bundle) -> Iterator[Issue]:
    """E072: ``phone_region`` that phonenumbers has no plan for."""
    config = bundle.config
    if not has_key(config.where, "phone_region") or config.phone_region in known_regions():
        return
    yield error(
        "E072",
        f"Config phone_region: no numbering plan is known for region '{config.phone_region}'",
        value_span(config.where, "phone_region"),
        "write the ISO 3166 code of the region in capitals, such as VN (Viet Nam) or TH (Thailand)",
    )
