"""JSON columns: what the store writes is compact JSON text that reads back as the value written.

The store's serializer skips the encoder for an empty dict (a change's ``data``, a run's
``visits``); a dict subclass is stored as its items, in order. On SQLite the
reader decodes compact text directly; text with whitespace (written by another tool) reads the
same, and a bad document fails as ``json.loads`` would.
"""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from flowctl.store.engines import make_engine

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12
)
#: What the store's JSON columns hold: an object or an array (SQLite keeps a bare number as a number).
DOCUMENTS = st.dictionaries(st.text(), VALUES, max_size=4) | st.lists(VALUES, max_size=4)
COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

table = sa.Table("docs", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.JSON))


def stored(value: Any) -> tuple[str, Any]:
    """(the column's text, the value read back) of ``value`` written through the store's engine."""
    with tempfile.TemporaryDirectory(prefix="flowctl-json-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'docs.db'}")
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(table.insert().values(id=1, body=value))
            text = conn.execute(sa.text("select body from docs")).scalar_one()
            back = conn.execute(sa.select(table.c.body)).scalar_one()
        engine.dispose()
    return text, back


@settings(deadline=None)  # each example opens a new file with synchronous=FULL: fsyncs, not our code
@given(DOCUMENTS)
def test_a_json_value_is_stored_as_compact_text_and_reads_back_equal(value: Any) -> None:
    text, back = stored(value)
    assert text == COMPACT(value)
    assert back == value


def test_empty_containers_and_dict_subclasses_are_stored_as_json() -> None:
    assert stored({}) == ("{}", {})
    assert stored([]) == ("[]", [])
    assert stored({"visits": {}}) == ('{"visits":{}}', {"visits": {}})
    assert stored(OrderedDict(b=1, a=2)) == ('{"b":1,"a":2}', {"b": 1, "a": 2})
    assert stored(OrderedDict()) == ("{}", {})


def read_text(text: str | bytes) -> Any:
    """The value of a JSON column holding ``text``, as the store's SQLite engine reads it."""
    with tempfile.TemporaryDirectory(prefix="flowctl-json-") as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'docs.db'}")
        table.create(engine)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("insert into docs (id, body) values (1, :text)"), {"text": text})
                return conn.execute(sa.select(table.c.body)).scalar_one()
        finally:
            engine.dispose()


def test_json_text_with_whitespace_reads_as_its_value_and_a_bad_document_fails_as_json_loads_does() -> None:
    assert read_text('{"a":[1,{}],"b":"é"}') == {"a": [1, {}], "b": "é"}
    assert read_text(' {"a": 1}\n ') == {"a": 1}
    assert read_text("[1, 2] ") == [1, 2]
    assert read_text(b'{"a": 1}') == {"a": 1}  # a BLOB another tool wrote: bytes, as json.loads reads them
    for bad in ('{"a":1}x', "{", " "):
        with pytest.raises(json.JSONDecodeError) as caught:
            read_text(bad)
        with pytest.raises(json.JSONDecodeError) as expected:
            json.loads(bad)
        assert str(caught.value) == str(expected.value)
