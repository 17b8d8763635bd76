"""``flowctl init``: a new repository that validates and whose scenarios pass as created."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

from flowctl.cli.init import TEMPLATE
from tests.cli.conftest import ROOT, invoke


def _matches(path: str, glob: str) -> bool:
    """A glob as VS Code reads it: ``**/`` is any number of folders, ``*`` stays within one."""
    pattern = re.escape(glob).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
    return re.fullmatch(pattern, path) is not None


def test_a_new_repository_validates_and_its_test_passes(tmp_path: Path) -> None:
    repo = tmp_path / "crm-automations"
    result = invoke("init", repo)
    assert result.exit_code == 0, result.output
    assert "next: cd " in result.output
    for folder in ("flows", "pipelines", "templates", "channels", "tests", "objects"):
        assert (repo / folder).is_dir(), folder
    validated = invoke("validate", repo)
    assert validated.exit_code == 0, validated.output
    assert "0 errors, 0 warnings" in validated.output
    tested = invoke("test", repo)
    assert tested.exit_code == 0, tested.output
    assert tested.output.splitlines()[-1] == "2 passed, 0 failed"
    sarif = json.loads(invoke("validate", repo, "--format", "sarif").output)
    assert sarif["runs"][0]["results"] == []
    assert "name: crm-automations" in (repo / "flowctl.yaml").read_text(encoding="utf-8")


def test_the_editor_ci_and_hook_files(tmp_path: Path) -> None:
    invoke("init", tmp_path)
    settings = json.loads((tmp_path / ".vscode" / "settings.json").read_text(encoding="utf-8"))
    ((schema, globs),) = settings["yaml.schemas"].items()
    assert (tmp_path / schema).is_file()  # the bundle, written by init
    documents = [p.relative_to(tmp_path) for p in tmp_path.rglob("*.yaml") if not p.name.startswith(".")]
    assert all(any(_matches(doc.as_posix(), g) for g in globs) for doc in documents), documents
    workflow = yaml.safe_load((tmp_path / ".github" / "workflows" / "flowctl.yml").read_text(encoding="utf-8"))
    runs = [step.get("run", "") for step in workflow["jobs"]["flowctl"]["steps"]]
    assert any("flowctl validate . --format sarif" in run for run in runs) and "flowctl test ." in runs
    hooks = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (hook,) = hooks["repos"][0]["hooks"]
    assert hook["entry"] == "flowctl validate ." and hook["files"] == r"\.(ya?ml|j2)$"
    assert (tmp_path / ".flowctlignore").is_file() and (tmp_path / ".gitignore").is_file()


def test_it_refuses_a_directory_that_is_not_empty_unless_forced(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # a fresh `git init` is fine
    assert invoke("init", tmp_path).exit_code == 0
    (tmp_path / "flows" / "welcome.yaml").write_text("# mine\n", encoding="utf-8")
    refused = invoke("init", tmp_path)
    assert refused.exit_code == 1
    assert "is not empty" in refused.output and "--force" in refused.output
    assert (tmp_path / "flows" / "welcome.yaml").read_text(encoding="utf-8") == "# mine\n"
    assert invoke("init", tmp_path, "--force").exit_code == 0
    assert "kind: Flow" in (tmp_path / "flows" / "welcome.yaml").read_text(encoding="utf-8")


def test_a_yaml_file_of_another_tool_is_named_for_flowctlignore(tmp_path: Path) -> None:
    invoke("init", tmp_path)
    compose = "services:\n  web: {image: nginx}\n"
    (tmp_path / "docker-compose.yml").write_text(compose, encoding="utf-8")  # listed by init's .flowctlignore
    assert invoke("validate", tmp_path).exit_code == 0
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "compose.yml").write_text(compose, encoding="utf-8")
    result = invoke("validate", tmp_path)
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "error[" in line]
    assert line.startswith("deploy/compose.yml:1:1: error[E011]: not a flowctl document")
    assert "add the line 'deploy/compose.yml' to .flowctlignore" in line


def test_the_template_ships_in_the_wheel() -> None:
    """Wheels leave out hidden files, so the template names them dot-NAME; package-data takes them all."""
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"
    ]["flowctl"]
    assert "cli/init_template/**/*" in package_data
    assert not list(TEMPLATE.rglob(".*")), "name a hidden file dot-NAME in init_template/"


def test_the_repositorys_hook_filters_to_yaml_and_templates() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["files"] == r"\.(ya?ml|j2)$" and hook["pass_filenames"] is False
