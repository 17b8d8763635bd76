"""SARIF 2.1.0 for ``flowctl validate --format sarif``: one log, one run, whatever the directories.

GitHub code scanning (and SARIF Multitool) want every rule described: ``shortDescription``,
``fullDescription`` and a ``helpUri``; they come from docs/errors.md (``flowctl.spec.codes``).
Several directories make one run whose result paths start with their directory: GitHub rejects
an upload with two runs of the same tool and category.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowctl import __version__
from flowctl.spec.codes import describe

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
REPOSITORY = "https://github.com/flowctl/flowctl"  # as in README's pre-commit snippet
INFORMATION_URI = REPOSITORY
#: Where docs/errors.md is published; a fork or a mirror sets FLOWCTL_DOCS_URL to its own copy.
DOCS_URL = REPOSITORY + "/blob/main/docs/"


def docs_url() -> str:
    base = os.environ.get("FLOWCTL_DOCS_URL") or DOCS_URL
    return base if base.endswith("/") else base + "/"


def rule(code: str, docs: str) -> dict[str, Any]:
    described = describe(code)
    return {
        "id": code,
        "name": code,
        "shortDescription": {"text": described.short},
        "fullDescription": {"text": described.full},
        "helpUri": f"{docs}errors.md#{described.anchor}",
        "help": {"text": f"{described.full} See {docs}errors.md#{described.anchor} for an example and the fix."},
        "defaultConfiguration": {"level": "warning" if code.startswith("W") else "error"},
    }


def _result(issue: Any, root: Path, index: int) -> dict[str, Any]:
    message = issue.message + (f" (hint: {issue.hint})" if issue.hint else "")
    return {
        "ruleId": issue.code,
        "ruleIndex": index,
        "level": "error" if issue.severity == "error" else "warning",
        "message": {"text": message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": (root / issue.file).as_posix()},
                    "region": {"startLine": issue.line, "startColumn": issue.col},
                }
            }
        ],
    }


def sarif_log(loaded: Sequence[Any], empty: Sequence[str] = ()) -> dict[str, Any]:
    """One SARIF log over every loaded directory; ``empty`` holds a message per directory without documents."""
    codes = sorted({issue.code for each in loaded for issue in each.issues})
    docs = docs_url()
    results = [_result(issue, Path(each.root), codes.index(issue.code)) for each in loaded for issue in each.issues]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "flowctl",
                "version": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [rule(code, docs) for code in codes],
            }
        },
        "invocations": [
            {
                "executionSuccessful": not empty,
                "toolExecutionNotifications": [{"level": "error", "message": {"text": text}} for text in empty],
            }
        ],
        "results": results,
    }
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
