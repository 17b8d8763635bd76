"""A configuration version as stored: its id (the content hash), its files and its git origin.

``Snapshot`` is a version ready to plan: the loaded bundle, every file's text (YAML files and the
template files they read), and the git commit and author when the directory is a checkout.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from flowctl.ports import ConfigVersion
from flowctl.spec.checks._common import template_file
from flowctl.spec.config import Loaded, load_bundle, load_bundle_from_files
from flowctl.spec.loader import load_text
from flowctl.spec.model import empty_map

GIT_TIMEOUT = 10.0


class VersionNotFound(LookupError):
    def __init__(self, wanted: str, matches: int = 0) -> None:
        why = (
            f"{matches} versions start with '{wanted}'; give more characters"
            if matches
            else (f"no stored version '{wanted}'; see 'flowctl history'")
        )
        super().__init__(why)


class NotRebuildable(ValueError):
    def __init__(self, version: str) -> None:
        super().__init__(
            f"version {version} was stored without its files (before flowctl apply kept them), so it cannot be rebuilt"
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    loaded: Loaded
    files: Mapping[str, str]
    id: str
    commit: str = ""
    author: str = ""
    message: str = ""
    origin: str = ""  # the directory, or "version <id>" for a stored one
    documents: Mapping[str, Any] = field(default_factory=empty_map)

    def to_version(self, applied_at: datetime, *, message: str = "") -> ConfigVersion:
        return ConfigVersion(
            id=self.id,
            applied_at=applied_at,
            documents=dict(self.documents),
            commit=self.commit,
            author=self.author,
            message=message or self.message,
            files=dict(self.files),
        )


def content_hash(loaded: Loaded) -> str:
    """The id of a configuration (the same for the daemon, ``plan`` and ``apply``).

    The hash of its files' contents in path order, then of its templates' texts.
    """
    digest = hashlib.sha256()
    base = loaded.root
    for name in sorted(loaded.files):
        path = base / name
        digest.update(name.encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
    for template in sorted(loaded.bundle.templates.values() if loaded.bundle else (), key=lambda t: t.name):
        digest.update((template.text + template.html).encode())
    return digest.hexdigest()[:16]


def read_directory(directory: Path | str) -> Snapshot:
    """Load ``directory`` and capture it: the files as text, the content hash, the git commit."""
    loaded = load_bundle(directory)
    base = loaded.root
    files: dict[str, str] = {}
    for name in loaded.files:
        try:
            files[name] = (base / name).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # the load reported it; an invalid directory is never deployed
    files.update(template_files(loaded))
    commit, author, message = git_origin(base)
    return Snapshot(
        loaded=loaded,
        files=files,
        id=content_hash(loaded),
        commit=commit,
        author=author,
        message=message,
        origin=str(base),
        documents=raw_documents(files),
    )


def template_files(loaded: Loaded) -> dict[str, str]:
    """The ``text_file``/``html_file`` texts the templates read, by path under the directory."""
    out: dict[str, str] = {}
    if loaded.bundle is None:
        return out
    for template in loaded.bundle.templates.values():
        for name in (template.text_file, template.html_file):
            rel = template_file(str(loaded.root), template, name) if name else None
            if rel is None or rel.startswith("/"):
                continue
            try:
                out[rel] = (loaded.root / rel).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return out


#: The last version built or deployed in this process, by id: a reload plans against the running
#: version and then runs the one it deployed, and building either again (5,000 flows: seconds of
#: CPU each) would make a reload cost three builds instead of one. One entry: the running version,
#: which its engine holds anyway, so the cache keeps no bundle alive that would otherwise go.
_last: dict[str, Snapshot] = {}
_last_lock = threading.Lock()


def remember(snapshot: Snapshot) -> None:
    """``snapshot`` was just deployed: the next ``from_version`` of it need not build it again."""
    with _last_lock:
        _last.clear()
        _last[snapshot.id] = snapshot


def from_version(version: ConfigVersion) -> Snapshot:
    """Rebuild a stored version (for rollback, reload and replay baselines); the one last built or
    deployed here is reused when its files are the stored ones."""
    if not version.files:
        raise NotRebuildable(version.id)
    with _last_lock:
        known = _last.get(version.id)
    if known is not None and known.files == version.files:
        return replace(
            known, commit=version.commit, author=version.author, message=version.message, origin=f"version {version.id}"
        )
    loaded = load_bundle_from_files(version.files, root=f"<version {version.id}>")
    built = Snapshot(
        loaded=loaded,
        files=dict(version.files),
        id=version.id,
        commit=version.commit,
        author=version.author,
        message=version.message,
        origin=f"version {version.id}",
        documents=raw_documents(version.files),
    )
    if loaded.ok:
        remember(built)
    return built


def raw_documents(files: Mapping[str, str]) -> dict[str, Any]:
    """Every YAML document of ``files`` as plain data, by ``"<Kind>/<name>"``."""
    out: dict[str, Any] = {}
    for name in sorted(files, key=lambda n: tuple(n.split("/"))):
        if not name.endswith((".yaml", ".yml")):
            continue
        for doc in load_text(files[name], name).documents:
            data: dict[str, Any] = doc.data if isinstance(doc.data, dict) else {}
            meta: dict[str, Any] = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
            key = f"{data.get('kind', '?')}/{meta.get('name', f'{name}#{doc.index}')}"
            out.setdefault(key, data)
    return out


def resolve(versions: list[ConfigVersion], wanted: str) -> ConfigVersion:
    """The stored version whose id is ``wanted`` or starts with it (unambiguously)."""
    exact = [v for v in versions if v.id == wanted]
    if exact:
        return exact[0]
    found = [v for v in versions if v.id.startswith(wanted)] if wanted else []
    if len(found) == 1:
        return found[0]
    raise VersionNotFound(wanted, len(found))


def git_origin(directory: Path) -> tuple[str, str, str]:
    """(commit, author, subject) of the last commit touching ``directory``; empty outside a
    checkout. A working tree with uncommitted changes under it gives ``<commit>-dirty``."""
    log = _git(directory, "log", "-1", "--format=%H%x00%an <%ae>%x00%s", "--", ".")
    if not log:
        return "", "", ""
    commit, author, subject = [*log.split("\x00"), "", ""][:3]
    status = _git(directory, "status", "--porcelain", "--untracked-files=all", "--", ".").splitlines()
    # a database or log beside the YAML is no change; an edited file or a new YAML file is
    if any(not line.startswith("??") or line.endswith((".yaml", ".yml")) for line in status):
        commit += "-dirty"
    return commit, author, subject


def _git(directory: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""
