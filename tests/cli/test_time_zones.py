"""Time-zone names validate without a system zone database (Windows, slim images): the ``tzdata``
package is a dependency, and zoneinfo falls back to it when ``PYTHONTZPATH`` finds nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowctl.spec.checks import schedules
from flowctl.testing import write_config


def _validate_without_system_zones(tmp_path: Path, zone: str) -> dict[str, object]:
    text = f"apiVersion: flowctl/v1\nkind: Config\nmetadata: {{name: main}}\nspec: {{timezone: {zone}}}\n"
    config = write_config(tmp_path / "config", {"flowctl.yaml": text})
    empty = tmp_path / "no-zoneinfo"
    empty.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONTZPATH": str(empty)}
    probe = subprocess.run(
        [sys.executable, "-c", "import zoneinfo; print(zoneinfo.TZPATH)"], env=env, capture_output=True, text=True
    )
    assert probe.stdout.strip() == f"('{empty}',)"  # the system database really is out of reach
    done = subprocess.run(
        [sys.executable, "-m", "flowctl", "validate", str(config), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    data: dict[str, object] = json.loads(done.stdout)
    return data


def test_validate_accepts_ho_chi_minh_without_a_system_zone_database(tmp_path: Path) -> None:
    data = _validate_without_system_zones(tmp_path, "Asia/Ho_Chi_Minh")
    assert data["valid"] is True, data


@pytest.mark.parametrize(
    ("written", "suggested"),
    [
        ("Asia/Ho_Chi_Min", "Asia/Ho_Chi_Minh"),
        ("asia/ho_chi_minh", "Asia/Ho_Chi_Minh"),
        ("Europe/Berln", "Europe/Berlin"),
    ],
)
def test_a_misspelt_zone_is_told_a_real_different_name(tmp_path: Path, written: str, suggested: str) -> None:
    data = _validate_without_system_zones(tmp_path, written)
    assert data["valid"] is False
    (issue,) = data["issues"]  # type: ignore[misc]
    assert issue["code"] == "E062"
    assert f"did you mean '{suggested}'?" in issue["hint"]
    assert f"'{written}'" not in issue["hint"]


def test_without_any_zone_database_the_hint_says_to_install_tzdata(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedules, "_zones", frozenset)  # neither the system's nor tzdata's
    assert "install the tzdata package" in schedules.zone_hint("Asia/Ho_Chi_Minh")
