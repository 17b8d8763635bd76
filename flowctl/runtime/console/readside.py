"""What the console reads, as a protocol: the methods of ``flowctl.runtime.reads.Reads`` (the read
side the ``/v1`` read endpoints serve too) that the pages call. Every method is synchronous (store
I/O): the pages call them in a thread. Errors are the API's (``NotFound``, ``BadRequest``,
``Conflict``), which the pages render.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class ReadSide(Protocol):
    def runs(
        self,
        *,
        status: str = "",
        automation: str = "",
        object: str = "",
        record_id: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str = "",
    ) -> dict[str, Any]: ...
    def run(self, run_id: str) -> dict[str, Any]: ...
    def outbox(
        self,
        *,
        status: str = "",
        channel: str = "",
        object: str = "",
        record_id: str = "",
        limit: int = 50,
        cursor: str = "",
    ) -> dict[str, Any]: ...
    def retry(self, row_id: int) -> dict[str, Any]: ...
    def cancel(self, row_id: int) -> dict[str, Any]: ...
    def care(self) -> dict[str, Any]: ...
    def deployments(self, *, limit: int = 50, cursor: str = "") -> dict[str, Any]: ...
    def deployment_diff(self, from_id: str, to_id: str) -> dict[str, Any]: ...
    def board(self, pipeline: str, *, cards: int = 20, owner: str = "", q: str = "") -> dict[str, Any]: ...
    def stage_cards(
        self, pipeline: str, stage: str, *, limit: int = 50, cursor: str = "", owner: str = "", q: str = ""
    ) -> dict[str, Any]: ...
    def timeline(self, object: str, record_id: str) -> dict[str, Any]: ...
    def health(self) -> dict[str, Any]: ...
    def graph(self, name: str) -> dict[str, Any]: ...
    def recycle_bin(self, object: str, *, limit: int = 50, cursor: str = "") -> dict[str, Any]: ...
