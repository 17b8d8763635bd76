"""The ``Test`` document: a scenario of seeds and steps that ``flowctl test`` plays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowctl.spec.model.common import Document, Duration, empty_map
from flowctl.spec.places import NOWHERE, Where

# --------------------------------------------------------------------------------------------
# Test


@dataclass(frozen=True, kw_only=True, slots=True)
class TestRecord:
    """A record of a test: a seed in ``records:`` or the record of a step. ``texts`` holds, by
    field, how a plain YAML number was written when that differs from the number
    (``phone: 0944000111``), so a text field can keep what the author wrote."""

    object: str
    id: str
    fields: Mapping[str, Any] = field(default_factory=empty_map)
    stage: str = ""
    pipeline: str = ""
    texts: Mapping[str, str] = field(default_factory=empty_map)
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class TestStep:
    """One scenario step. ``op`` is create, update, move, delete, restore, event, advance or expect.

    * create/update/delete/restore: record (object, id, fields)
    * move: record (object, id, stage)
    * event: event, record (object, id), data
    * advance: by (a duration) or to (an ISO timestamp)
    * expect: effects (None = not checked; () = none; ``exactly``: no other effect),
      record (object, id, stage?, fields?), refused (None = not checked; otherwise the step
      before was refused with a reason containing it, '' for any reason)
    """

    op: str
    record: TestRecord | None = None
    event: str = ""
    data: Mapping[str, Any] = field(default_factory=empty_map)
    by: Duration | None = None
    to: str = ""
    effects: tuple[Mapping[str, Any], ...] | None = None
    exactly: bool = False
    expect_record: Mapping[str, Any] | None = None
    refused: str | None = None
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Test(Document):
    __test__ = False  # not a pytest class
    kind: str = "Test"
    now: str = ""
    records: tuple[TestRecord, ...] = ()
    steps: tuple[TestStep, ...] = ()
