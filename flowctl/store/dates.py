"""The month-day index of record dates: what lets a care tick cost what it finds.

Every record field whose value reads as a date (``1990-02-28``, ``28/02/1990``, an ISO timestamp)
gets a ``record_dates`` row keyed by ``month_day`` (``MMDD`` as an int, 229 for 29 February).
The store does not know which fields care processes use, so it indexes every date-like value:
a new care process on another field needs no re-indexing. Rows are rewritten whenever the store
writes the record, and dropped when it is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from flowctl.engine.care import parse_date

#: Longest text read as a date (``2026-03-01T09:00:00.000000+07:00`` is 32 characters).
MAX_DATE_TEXT = 40


def month_day(day: date) -> int:
    return day.month * 100 + day.day


def dates_of(fields: Mapping[str, Any]) -> Iterable[tuple[str, date]]:
    """(field, date) for every field value that reads as a date."""
    for name, value in fields.items():
        if isinstance(value, str) and 6 <= len(value) <= MAX_DATE_TEXT and value[:1].isdigit():
            day = parse_date(value)
            if day is not None:
                yield name, day


def date_rows(record_rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``record_dates`` rows of records as ``rows.record_row`` shapes them (none if deleted)."""
    out = []
    for row in record_rows:
        if row["deleted"]:
            continue
        for name, day in dates_of(row["fields"]):
            out.append(
                {
                    "object": row["object"],
                    "record_id": row["id"],
                    "field": name,
                    "month_day": month_day(day),
                    "value": day.isoformat(),
                }
            )
    return out
