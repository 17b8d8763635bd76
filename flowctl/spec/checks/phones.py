"""E072: a Config ``phone_region`` no numbering plan is known for; W002: a Test that seeds or
writes a phone field with a number no plan has.

Every phone number written without ``+`` and a country code is read in that region; one the
plans do not know (``VM`` for ``VN``) would make the API refuse every such number, so validate
says so first. A Test's literal phone that no plan has would fail ``flowctl test`` at that value;
validate says so before the test runs (``update_fields`` literals and ``to:`` are checked with
the other W002s, in ``expressions.py`` and ``recipients.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import has_key, value_span
from flowctl.spec.issues import Issue, error, warning
from flowctl.spec.phones import known_regions, phone_hint, phone_problem


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


def check_test_phones(bundle: m.Bundle) -> Iterator[Issue]:
    """W002: a phone field of a Test's record given a number no plan has."""
    region = bundle.config.phone_region
    for test in bundle.tests.values():
        records = [*test.records, *(step.record for step in test.steps if step.record is not None)]
        for record in records:
            obj = bundle.objects.get(record.object)
            if obj is None:
                continue  # E030
            for name, value in record.fields.items():
                spec = obj.fields.get(name)
                if spec is None or spec.type != "phone" or value is None or isinstance(value, bool):
                    continue
                written = record.texts.get(name) or str(value)
                if "{" in written or not phone_problem(written, region):
                    continue
                yield warning(
                    "W002",
                    f"test '{test.name}' gives {record.object} {record.id} the phone '{written}', which is not a "
                    f"phone number any numbering plan has (read in region {region})",
                    value_span(record.where, "fields", name),
                    phone_hint(region),
                )
