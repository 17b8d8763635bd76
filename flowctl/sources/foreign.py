"""A table of another database, read page by page in cursor order: what the SQL polling source reads.

The polling source (``sources/polling.py``) decides what a row means (a put, a patch, a delete);
reading the table is database work, kept apart from it here: the table is reflected
once, a page is ``WHERE (c1, c2) > (:v1, :v2) ORDER BY c1, c2 LIMIT n`` (an index on the cursor
columns answers it reading only those rows), and the delete scan reads the key column alone.
Connections are checked at checkout (``pool_pre_ping``), so a restarted database costs one retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


class ForeignTable:
    """``table`` (``schema.name`` or ``name``) of the database at ``url``, reflected on opening."""

    def __init__(self, url: str, table: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        schema, _, name = table.rpartition(".")
        try:
            self.table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=self.engine)
        except Exception:  # no table, or the database is unreachable: its connections go with it
            self.engine.dispose()
            raise

    def has(self, column: str) -> bool:
        return column in self.table.c

    def python_type(self, column: str) -> type[Any]:
        """The Python type the column's values come as (``object`` when the type does not say)."""
        try:
            kind: type[Any] = self.table.c[column].type.python_type
        except NotImplementedError:
            kind = object
        return kind

    def page(self, cursor: Sequence[str], after: Sequence[Any] | None, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` rows whose ``cursor`` columns come after ``after`` (None: from the
        start), in cursor order, each as a dict of all its columns."""
        cursor_cols = [self.table.c[name] for name in cursor]
        query = sa.select(self.table).order_by(*cursor_cols).limit(limit)
        if after is not None:
            bound = [sa.literal(v, col.type) for v, col in zip(after, cursor_cols, strict=True)]
            query = query.where(sa.tuple_(*cursor_cols) > sa.tuple_(*bound))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def keys(self, key: str) -> set[str]:
        """Every value of the ``key`` column, as text (the delete scan reads the keys only)."""
        with self.engine.connect() as conn:
            return {str(k) for k in conn.execute(sa.select(self.table.c[key])).scalars()}

    def close(self) -> None:
        self.engine.dispose()
