"""/metrics of a real daemon (both of its processes) as Prometheus and promtool read it."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from flowctl import __version__
from flowctl.testing import Daemon, wait_for
from tests.ecosystem.configs import welcome_config

ROOT = Path(__file__).resolve().parents[2]
#: Units a name may end in: Prometheus's base units, or a count with no unit at all.
BASE_UNITS = ("_seconds", "_bytes", "_total", "_info", "_fds")
NOT_BASE = re.compile(r"_(ms|milliseconds|microseconds|minutes|hours|days|kb|mb|kilobytes|megabytes|percent)(_|$)")


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Daemon]]:
    """The text of /metrics once a contact's SMS went out through the engine process."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    with Daemon(welcome_config(tmp_path), f"sqlite:///{tmp_path / 'flowctl.db'}") as daemon:
        assert daemon.put("contact", "1", {"full_name": "Lan", "phone": "0901234567"}).status_code == 202

        def observed() -> bool:
            text = daemon.get("/metrics").text
            return all(
                re.search(rf"^{name}_count\S* [1-9]", text, re.MULTILINE)
                for name in (
                    "flowctl_engine_batch_seconds",
                    "flowctl_change_to_outbox_seconds",
                    "flowctl_delivery_seconds",
                )
            )

        wait_for(
            observed, what="the engine's and the deliverer's histograms", detail=lambda: daemon.get("/metrics").text
        )
        yield daemon.get("/metrics").text, daemon


def samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_every_family_has_a_type_help_and_a_base_unit(exposition: tuple[str, Daemon]) -> None:
    text, _ = exposition
    families = {family.name: family for family in text_string_to_metric_families(text)}
    for name, family in families.items():
        assert family.documentation, f"{name} has no HELP"
        assert family.type in ("counter", "gauge", "histogram"), f"{name} is {family.type}"
        assert not NOT_BASE.search(name), f"{name} is not in a base unit (seconds, bytes)"
        if family.type == "histogram":
            assert name.endswith("_seconds"), f"histogram {name} does not say its unit"
        for sample in family.samples:  # the parser drops a counter's _total from the family's name
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), f"counter sample {sample.name} lacks _total"
            else:
                assert not sample.name.endswith("_total"), f"{family.type} {sample.name} ends in _total"
    expected = {
        "flowctl_changes_processed": "counter",  # a gauge named *_total before: promtool refused it
        "flowctl_timers_fired": "counter",
        "flowctl_engine_restarts": "counter",
        "flowctl_engine_stalls": "counter",
        "flowctl_changes_accepted": "counter",
        "flowctl_build_info": "gauge",
        "flowctl_engine_batch_seconds": "histogram",
        "flowctl_change_to_outbox_seconds": "histogram",
        "flowctl_delivery_seconds": "histogram",
        "flowctl_send_seconds": "histogram",
        "flowctl_http_request_seconds": "histogram",
        "process_cpu_seconds": "counter",
        "process_resident_memory_bytes": "gauge",
        "process_open_fds": "gauge",
        "flowctl_engine_process_cpu_seconds": "counter",
        "flowctl_engine_process_resident_memory_bytes": "gauge",
    }
    assert {name: families[name].type for name in expected if name in families} == expected


def test_build_info_and_the_engine_process_numbers(exposition: tuple[str, Daemon]) -> None:
    text, daemon = exposition
    found = samples(text)
    (info,) = found["flowctl_build_info"]
    assert info.value == 1
    assert info.labels["version"] == __version__
    assert re.fullmatch(r"[0-9a-f]{16}", info.labels["config_version"]), info.labels
    assert info.labels["config_version"] in daemon.output()  # the version the banner names
    assert found["flowctl_changes_processed_total"][0].value >= 1  # counted in the engine process
    batches = {s.labels["kind"]: s.value for s in found["flowctl_engine_batch_seconds_count"]}
    assert batches["changes"] >= 1
    (delivered,) = [s for s in found["flowctl_delivery_seconds_count"] if s.labels["channel"] == "log"]
    assert delivered.value == 1
    engine_rss = found["flowctl_engine_process_resident_memory_bytes"][0].value
    assert engine_rss > 10_000_000  # the engine process's own memory (a Python with flowctl loaded)
    assert found["process_resident_memory_bytes"][0].value > 10_000_000


def test_every_metric_is_listed_in_operations_md(exposition: tuple[str, Daemon]) -> None:
    text, _ = exposition
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    listed = docs.split("## Metrics (`GET /metrics`)", 1)[1].split("\n## ", 1)[0]
    names = {family.name for family in text_string_to_metric_families(text)}  # a counter's without _total
    missing = sorted(name for name in names if name.startswith("flowctl_") and f"`{name}" not in listed)
    assert not missing, f"not listed under 'Metrics' in docs/operations.md: {missing}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_promtool_check_metrics_passes(exposition: tuple[str, Daemon]) -> None:
    text, _ = exposition
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus)")
def test_the_sample_alert_rules_of_operations_md_are_valid(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    rules = tmp_path / "flowctl.rules.yml"
    rules.write_text("groups:" + docs.split("```yaml other\ngroups:", 1)[1].split("```", 1)[0])
    checked = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout
