"""The loader: positions of every node, duplicate keys, and YAML 1.1 surprises handled on purpose."""

from __future__ import annotations

from pathlib import Path

from flowctl.spec.config import load_bundle
from flowctl.spec.loader import VALUE, load_directory, load_text
from flowctl.spec.places import Span


def one(text: str) -> dict:
    result = load_text(text, "t.yaml")
    assert not result.issues, result.issues
    (doc,) = result.documents
    return doc.data


def test_time_of_day_stays_text_not_base60_integer() -> None:
    # YAML 1.1 reads 08:00 as the sexagesimal integer 480.
    assert one("at: 08:00\nlate: 22:30:15\n") == {"at": "08:00", "late": "22:30:15"}


def test_yes_no_on_off_are_words_not_booleans() -> None:
    data = one("on: updated\nno: 1\nyes: y\nflag: off\n")
    assert data == {"on": "updated", "no": 1, "yes": "y", "flag": "off"}


def test_true_and_false_are_the_only_booleans() -> None:
    assert one("a: true\nb: False\nc: TRUE\n") == {"a": True, "b": False, "c": True}


def test_unquoted_dates_stay_text() -> None:
    data = one("birthday: 1990-02-28\nnow: 2026-03-01T09:00:00+07:00\n")
    assert data == {"birthday": "1990-02-28", "now": "2026-03-01T09:00:00+07:00"}


def test_numbers_and_nulls_follow_yaml_1_2_core() -> None:
    data = one("a: 12\nb: -3\nc: 1.5\nd: 0x1F\ne: 0o17\nf: ~\ng: null\nh:\ni: 010\nj: 1_000\n")
    assert data == {
        "a": 12,
        "b": -3,
        "c": 1.5,
        "d": 31,
        "e": 15,
        "f": None,
        "g": None,
        "h": None,
        "i": 10,
        "j": "1_000",
    }


def test_quoted_scalars_are_always_text() -> None:
    assert one("a: '12'\nb: \"true\"\nc: 'null'\n") == {"a": "12", "b": "true", "c": "null"}


def test_env_references_stay_unresolved() -> None:
    assert one("password: ${SMTP_PASSWORD}\nurl: 'https://${HOST}/x'\n") == {
        "password": "${SMTP_PASSWORD}",
        "url": "https://${HOST}/x",
    }


def test_duplicate_key_is_an_error_at_the_second_key() -> None:
    result = load_text("spec:\n  start: a\n  nodes: {}\n  start: b\n", "flow.yaml")
    (issue,) = result.issues
    assert issue.code == "E002"
    assert issue.span == Span("flow.yaml", 4, 3)
    assert "first defined at line 2" in issue.message


def test_duplicate_key_inside_flow_mapping() -> None:
    result = load_text("a: {x: 1, x: 2}\n", "f.yaml")
    assert [i.code for i in result.issues] == ["E002"]
    assert result.issues[0].span == Span("f.yaml", 1, 11)


def test_positions_of_keys_values_and_items() -> None:
    result = load_text("spec:\n  nodes:\n    pick: {type: branch}\n  list:\n    - a\n    - b\n", "f.yaml")
    marks = result.documents[0].marks
    assert marks[("spec", "nodes", "pick")] == Span("f.yaml", 3, 5)
    assert marks[("spec", "nodes", "pick", VALUE)] == Span("f.yaml", 3, 11)
    assert marks[("spec", "nodes", "pick", "type", VALUE)] == Span("f.yaml", 3, 18)
    assert marks[("spec", "list", 1)] == Span("f.yaml", 6, 7)


def test_several_documents_per_file_and_empty_ones_skipped() -> None:
    result = load_text("a: 1\n---\n---\nb: 2\n...\n", "f.yaml")
    assert [d.data for d in result.documents] == [{"a": 1}, {"b": 2}]
    assert [d.index for d in result.documents] == [0, 1]
    assert result.documents[1].span.line == 4


def test_syntax_error_points_at_the_line() -> None:
    result = load_text("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    (issue,) = result.issues
    assert issue.code == "E001"
    assert issue.span.file == "bad.yaml"
    assert issue.span.line >= 2


def test_anchors_aliases_and_merge_keys() -> None:
    data = one("base: &b {type: send_sms, next: done}\nx: *b\ny:\n  <<: *b\n  next: other\n")
    assert data["x"] == {"type": "send_sms", "next": "done"}
    assert data["y"] == {"type": "send_sms", "next": "other"}


def test_custom_tags_are_refused() -> None:
    result = load_text("a: !python/object:os.system ls\n", "f.yaml")
    assert [i.code for i in result.issues] == ["E003"]


def test_directory_walk_skips_hidden_and_ignored(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "a.yaml").write_text("a: 1\n")
    (tmp_path / "flows" / "b.yml").write_text("b: 1\n")
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "ci.yaml").write_text("on: push\n")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "x.yaml").write_text("x: 1\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    (tmp_path / ".flowctlignore").write_text("# not config\nexamples/\n")
    result = load_directory(tmp_path)
    assert result.files == ["flows/a.yaml", "flows/b.yml"]


def test_non_utf8_file_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "latin.yaml").write_bytes(b"name: caf\xe9\n")
    result = load_directory(tmp_path)
    assert [i.code for i in result.issues] == ["E001"]
    assert "UTF-8" in result.issues[0].message


def test_yes_for_a_boolean_field_says_write_true(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "apiVersion: flowctl/v1\nkind: CareProcess\nmetadata: {name: c}\nspec:\n  object: contact\n"
        "  enabled: yes\n  when: {anniversary_of: birthday}\n  actions: [{action: send_sms, text: hi}]\n"
    )
    loaded = load_bundle(tmp_path)
    issue = next(i for i in loaded.errors if i.code == "E010")
    assert issue.span.line == 6
    assert "true" in issue.hint
