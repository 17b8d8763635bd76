"""A plan: the proposed version against the deployed one and the live state.

``make_plan`` never writes. Its ``status`` is ``invalid`` (the proposed directory does not
validate), ``refused`` (a check said no), ``unchanged`` (the same content is deployed) or
``changes``; ``exit_code`` is what ``flowctl plan`` returns (1, 1, 0, 2). A version that differs
only in comments or layout of its YAML files (``layout_only``) is ``changes`` (apply stores the new
text) but exits 0: nothing that runs would change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowctl.gitops import impact
from flowctl.gitops.blast import Reach, blast_radius
from flowctl.gitops.diff import DocumentChange, FileChanges, diff_documents, diff_files
from flowctl.gitops.versions import NotRebuildable, Snapshot, from_version
from flowctl.ports import ConfigVersion, Store
from flowctl.spec import model as m


@dataclass(kw_only=True, slots=True)
class Plan:
    proposed: Snapshot
    current: ConfigVersion | None
    now: datetime
    documents: list[DocumentChange] = field(default_factory=list)
    files: FileChanges = field(default_factory=FileChanges)
    findings: list[impact.Finding] = field(default_factory=list)
    blast: list[Reach] = field(default_factory=list)
    cancel_runs: list[str] = field(default_factory=list)
    baseline: str = ""  # why the deployed version could not be compared, if it could not

    @property
    def errors(self) -> list[str]:
        return [str(issue) for issue in self.proposed.loaded.errors]

    @property
    def refusals(self) -> list[impact.Finding]:
        return [f for f in self.findings if f.severity == "refuse"]

    @property
    def status(self) -> str:
        if self.errors:
            return "invalid"
        if self.refusals:
            return "refused"
        if self.current is not None and self.current.id == self.proposed.id:
            return "unchanged"
        return "changes"

    @property
    def layout_only(self) -> bool:
        """Every document and template file is the same; only comments or layout of YAML differ."""
        files = self.files
        return (
            self.status == "changes"
            and self.current is not None
            and not self.baseline
            and not self.documents
            and not files.added
            and not files.removed
            and all(name.endswith((".yaml", ".yml")) for name in files.changed)
        )

    @property
    def exit_code(self) -> int:
        if self.layout_only:
            return 0
        return {"invalid": 1, "refused": 1, "unchanged": 0, "changes": 2}[self.status]

    def to_json(self) -> dict[str, Any]:
        current = self.current
        return {
            "status": self.status,
            "layout_only": self.layout_only,
            "proposed": {
                "id": self.proposed.id,
                "origin": self.proposed.origin,
                "commit": self.proposed.commit,
                "author": self.proposed.author,
                "documents": len(self.proposed.documents),
            },
            "deployed": None
            if current is None
            else {"id": current.id, "commit": current.commit, "applied_at": current.applied_at.isoformat()},
            "errors": self.errors,
            "documents": [d.to_json() for d in self.documents],
            "files": self.files.to_json(),
            "findings": [f.to_json() for f in self.findings],
            "blast_radius": [r.to_json() for r in self.blast],
            "cancel_runs": self.cancel_runs,
            "baseline": self.baseline,
            "now": self.now.isoformat(),
        }


def deployed(current: ConfigVersion | None) -> tuple[Snapshot | None, str]:
    """The deployed version rebuilt, or None and why it cannot be."""
    if current is None:
        return None, "nothing is deployed yet"
    try:
        return from_version(current), ""
    except NotRebuildable as exc:
        return None, str(exc)


def make_plan(
    store: Store,
    proposed: Snapshot,
    now: datetime,
    *,
    allow_cancel: bool = False,
    force: bool = False,
    blast: bool = True,
) -> Plan:
    current = store.current_version()
    plan = Plan(proposed=proposed, current=current, now=now)
    new = proposed.loaded.bundle
    if plan.errors or new is None:
        return plan
    snapshot, plan.baseline = deployed(current)
    old = snapshot.loaded.bundle if snapshot is not None else None
    if snapshot is not None:
        old_documents = dict(snapshot.documents)
        plan.documents = diff_documents(old_documents, proposed.documents)
    else:  # stored without its documents: only which documents exist can be compared
        old_documents = dict.fromkeys(current.documents) if current is not None else {}
        plan.documents = diff_documents(old_documents, dict.fromkeys(proposed.documents))
    plan.files = diff_files(current.files if current else {}, proposed.files)
    if current is not None and current.id == proposed.id:
        return plan
    findings = plan.findings
    findings.extend(impact.removal_check(list(old_documents), list(proposed.documents), force=force))
    findings.extend(impact.stage_checks(store, old, new))
    run_findings, plan.cancel_runs = impact.run_checks(store, new, allow_cancel=allow_cancel)
    findings.extend(run_findings)
    care = care_changes(plan.documents, old, new, known=current is None or snapshot is not None)
    findings.extend(impact.care_checks(store, [name for name, status in care if status == "changed"], new, now))
    findings.extend(impact.required_checks(store, old, new, force=force))
    findings.extend(impact.field_checks(store, old, new))
    if blast:
        plan.blast = blast_radius(store, old, new, care, now)
    return plan


def care_changes(
    documents: list[DocumentChange], old: m.Bundle | None, new: m.Bundle, *, known: bool = True
) -> list[tuple[str, str]]:
    """(process, added|changed|removed) for every care process the version changes. When the
    deployed version is stored without its documents, every proposed process counts as changed."""
    if old is None and not known:
        return [(name, "changed") for name in sorted(new.care)]
    return [(d.name, d.op) for d in documents if d.kind == "CareProcess"]
