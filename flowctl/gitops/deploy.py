"""Deploy a plan: one transaction stores the version, makes it current and cancels the runs the
plan listed (only when the plan allowed it). A refused or invalid plan is never applied, and a
plan made against a version that is no longer current is refused (plan again)."""

from __future__ import annotations

from datetime import datetime

from flowctl.gitops.plan import Plan
from flowctl.ports import Store


class NotDeployable(Exception):
    def __init__(self, plan: Plan) -> None:
        super().__init__(f"version {plan.proposed.id} is {plan.status}; nothing was applied")


class DeployConflict(Exception):
    def __init__(self, expected: str | None) -> None:
        super().__init__(
            f"the deployed version changed since the plan (it was {expected or 'none'}); "
            "nothing was applied; plan again"
        )


def deploy(store: Store, plan: Plan, now: datetime, *, message: str = "") -> bool:
    """Apply ``plan``; False when there was nothing to do (the version is already current)."""
    if plan.status == "unchanged":
        return False
    if plan.status != "changes":
        raise NotDeployable(plan)
    expected = plan.current.id if plan.current else None
    version = plan.proposed.to_version(now, message=message)
    if not store.deploy_version(version, expected, plan.cancel_runs, now=now):
        raise DeployConflict(expected)
    return True
