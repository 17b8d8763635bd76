"""Semantic checks beyond the schema: references, graphs, expressions, limits.

Each check is a function ``check_*(bundle) -> Iterator[Issue]`` that yields every problem it
finds with its place, so users see all of them at once. ``CHECKS`` lists them in the order
they run; ``run_checks`` isolates them so one check's bug cannot hide another's findings.
Every code is documented, with an example and its fix, in docs/errors.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from flowctl.spec.checks.access import check_access
from flowctl.spec.checks.calendars import check_calendars
from flowctl.spec.checks.cascade import check_cascades
from flowctl.spec.checks.delivery import check_webhook_delivery
from flowctl.spec.checks.expressions import check_expressions, check_set_values, check_templates
from flowctl.spec.checks.fetch import check_source_fetch
from flowctl.spec.checks.flows import check_loops, check_nodes, check_started
from flowctl.spec.checks.links import (
    check_linked_reads,
    check_record_writes,
    check_saved_in_conditions,
    check_saved_reads,
)
from flowctl.spec.checks.phones import check_phone_region, check_test_phones
from flowctl.spec.checks.pipelines import check_after, check_stage_fields, check_stage_ids
from flowctl.spec.checks.policies import check_care_defaults
from flowctl.spec.checks.recipients import check_recipients
from flowctl.spec.checks.references import (
    check_documents,
    check_fields,
    check_object_types,
    check_stages,
    check_users,
)
from flowctl.spec.checks.schedules import (
    check_care_limit,
    check_care_schedule,
    check_durations,
    check_time_zones,
)
from flowctl.spec.checks.secrets import check_secrets
from flowctl.spec.checks.sms import check_sms_encoding
from flowctl.spec.checks.source_auth import check_source_auth
from flowctl.spec.checks.waits import check_rule_delays, check_rule_waits
from flowctl.spec.checks.write_back import check_write_back
from flowctl.spec.checks.zalo import check_zalo
from flowctl.spec.issues import Issue, error
from flowctl.spec.model import Bundle
from flowctl.spec.places import Span

Check = Callable[[Bundle], Iterable[Issue]]

#: Code of the issue reported when a check itself fails (a flowctl bug, never the user's).
INTERNAL = "E999"

CHECKS: list[Check] = [
    # references
    check_object_types,
    check_fields,
    check_stages,
    check_documents,
    check_users,
    check_recipients,
    # flow graphs
    check_nodes,
    check_loops,
    check_started,
    # pipelines
    check_stage_ids,
    check_after,
    check_stage_fields,
    # conditions and templates
    check_expressions,
    check_templates,
    check_set_values,
    check_test_phones,
    # links and created records
    check_linked_reads,
    check_record_writes,
    check_saved_reads,
    check_saved_in_conditions,
    # time
    check_time_zones,
    check_phone_region,
    check_care_schedule,
    check_durations,
    check_care_limit,
    check_rule_delays,
    check_rule_waits,
    check_calendars,
    # automations as a whole
    check_cascades,
    check_secrets,
    check_access,
    check_care_defaults,
    check_webhook_delivery,
    check_zalo,
    check_sms_encoding,
    check_source_auth,
    check_source_fetch,
    check_write_back,
]


def run_checks(bundle: Bundle) -> Iterator[Issue]:
    """Every issue of every check; a check that crashes reports itself as E999 and the rest go on."""
    for check in CHECKS:
        found: list[Issue] = []
        try:
            found.extend(check(bundle))
        except Exception as exc:  # noqa: BLE001 - isolate a buggy check from the others
            name = getattr(check, "__name__", repr(check))
            found.append(
                error(
                    INTERNAL,
                    f"internal error in {name}: {type(exc).__name__}: {exc}",
                    Span(bundle.root, 1, 1),
                    "this is a flowctl bug, not a problem of the configuration; please report it",
                )
            )
        yield from found
