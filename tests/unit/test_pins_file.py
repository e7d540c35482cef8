"""The pins file as text: a new file's layout, and edits that keep the user's comments and order."""

from __future__ import annotations

import tomllib

from bisector.core.model import Attribution, Verdict
from bisector.review.pins.store import Pin, dumps, parse, show_text, updated_text
from bisector.review.text import attribution_sentence

A, B, C = "a" * 40, "b" * 40, "c" * 40

EDITED = f"""# Our team's pins. Keep the release ones!

# the release
[pins.release]
commit = "{C}"  # tagged v2.1
note = "shipped"

[pins.release.params]
lr = 0.1
# monday: the last run before the refactor

[pins.monday]
commit = "{B}"
# alpha comes last on purpose

[pins.alpha]
commit = "{A}"
# end of file
"""


def test_a_new_file_is_sorted_and_round_trips() -> None:
    pins = [Pin("tuesday", A, note='say "hi"\nthere', params={"train.lr": 0.1, "layers": [8, 4]},
                config={"probe.run": "sh check.sh"}, probes={"command": {"verdict": "good", "value": 0.9}},
                environment={"python": "3.12"}),
            Pin("monday", B, data={"data/x.csv": "md5:00"})]
    text = dumps(pins)
    assert text.startswith("# bisector pins: known-good configurations.")
    assert text.index("[pins.monday]") < text.index("[pins.tuesday]")
    assert '"probe.run" = "sh check.sh"' in text and "layers = [8, 4]" in text
    assert "[pins.tuesday.probes.command]" in text
    back = parse(text)
    assert back == {p.name: p for p in pins}
    assert dumps(back.values()) == text
    assert show_text(back["monday"]).startswith("[pins.monday]\n")


def test_adding_a_pin_keeps_every_comment_and_the_order() -> None:
    old = parse(EDITED)
    new = {**old, "zulu": Pin("zulu", A, note="new")}
    text = updated_text(EDITED, old, new)
    assert text.startswith(EDITED)  # the file is only appended to
    assert parse(text) == new


def test_removing_a_pin_drops_only_its_tables() -> None:
    old = parse(EDITED)
    new = {k: v for k, v in old.items() if k != "monday"}
    text = updated_text(EDITED, old, new)
    assert parse(text) == new
    assert "[pins.monday]" not in text and B not in text
    for comment in ("# Our team's pins", "# the release", "# tagged v2.1", "# monday: the last run",
                    "# alpha comes last on purpose", "# end of file"):
        assert comment in text
    assert text.index("[pins.release]") < text.index("# alpha comes last") < text.index("[pins.alpha]")


def test_removing_the_first_pin_keeps_the_comments_above_the_next() -> None:
    old = parse(EDITED)
    new = {k: v for k, v in old.items() if k != "release"}
    text = updated_text(EDITED, old, new)
    assert parse(text) == new
    assert "# monday: the last run before the refactor" in text
    assert text.index("# monday: the last run") < text.index("[pins.monday]") < text.index("[pins.alpha]")
    assert "shipped" not in text


def test_replacing_a_pin_keeps_its_place() -> None:
    old = parse(EDITED)
    new = {**old, "monday": Pin("monday", C, note="re-pinned")}
    text = updated_text(EDITED, old, new)
    assert parse(text) == new
    assert list(tomllib.loads(text)["pins"]) == ["release", "monday", "alpha"]
    assert "# alpha comes last on purpose" in text and "# end of file" in text


def test_attribution_sentences() -> None:
    data = Attribution("data", changed={"code": False, "data": True})
    assert attribution_sentence(data) == "Culprit is the DATA (only the data changed in this commit)"
    tested = {"parent_code_culprit_data": Verdict.BAD, "culprit_code_parent_data": Verdict.BAD}
    both = Attribution("both", changed={"code": True, "data": True}, tested=True, crossings=tested)
    line = attribution_sentence(both)
    assert line.startswith("Culprit is the CODE and the DATA: each of them alone breaks it (tested crossings: ")
    assert "the parent's code with the culprit's data is bad" in line and "BOTH" not in line
    assert "root commit" in attribution_sentence(Attribution("unknown", why="root commit"))
