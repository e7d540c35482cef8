"""The basic probe: frozen cases, matching, Wilson interval and the threshold rule, on real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import mlfixtures as mf
from bisector.core.errors import UsageError
from bisector.probes.basic import matches
from bisector.probes.registry import make_probe
from bisector.core.model import Verdict


def probe(tmp_path: Path, **spec):
    return make_probe({"type": "basic", "model": "src.serve:load", **spec}, user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")


def test_text_model_passes_its_cases(tmp_path):
    mf.text_cases(tmp_path / "cases.jsonl")
    ws = mf.text_project(tmp_path / "ws", "ok")
    obs = probe(tmp_path, cases="cases.jsonl").run(mf.make_ctx(ws, tmp_path / "logs"))
    assert obs.verdict is Verdict.GOOD, obs.summary
    assert obs.counts == (0, 5)
    assert obs.evidence["pass_rate"] == 1.0 and obs.evidence["failures"] == []
    lo, hi = obs.evidence["ci"]
    assert 0.5 < lo < 1.0 and hi == 1.0


def test_wrong_answers_are_bad_and_listed(tmp_path):
    mf.text_cases(tmp_path / "cases.jsonl")
    ws = mf.text_project(tmp_path / "ws", "wrong")
    obs = probe(tmp_path, cases="cases.jsonl", threshold=0.9, max_failures_shown=2).run(mf.make_ctx(ws, tmp_path / "logs"))
    assert obs.verdict is Verdict.BAD
    assert obs.counts == (3, 5)
    assert obs.evidence["pass_rate"] == pytest.approx(0.4)
    assert obs.evidence["failures_shown"] == 2
    assert obs.evidence["failures"][0] == {
        "id": "capital", "prompt": "What is the capital of France?", "expected": "Paris", "match": "exact", "output": "Lyon",
    }
    assert "pass rate 40.0% (2/5" in obs.summary and "threshold 0.9" in obs.summary


def test_cases_are_frozen_at_construction(tmp_path):
    cases = mf.text_cases(tmp_path / "cases.jsonl")
    p = probe(tmp_path, cases="cases.jsonl")
    sha = p.config()["cases"]["sha256"]
    cases.write_text(json.dumps({"prompt": "2 + 2 =", "expected": "five"}) + "\n")  # edited mid-session
    obs = p.run(mf.make_ctx(mf.text_project(tmp_path / "ws", "ok"), tmp_path / "logs"))
    assert obs.counts == (0, 5)  # still judged by the 5 original cases
    assert probe(tmp_path, cases="cases.jsonl").config()["cases"]["sha256"] != sha


def test_a_model_without_the_needed_method_is_skip_not_bad(tmp_path):
    (tmp_path / "cases.jsonl").write_text(json.dumps({"input": [1, 2], "expected": 1}) + "\n")
    ws = mf.text_project(tmp_path / "ws", "ok")  # a text model: no predict()
    obs = probe(tmp_path, cases="cases.jsonl").run(mf.make_ctx(ws, tmp_path / "logs"))
    assert obs.verdict is Verdict.SKIP
    assert "every case raised: TypeError: the model offers no predict(input)" in obs.summary


def test_toml_cases_and_the_confident_rule(tmp_path):
    (tmp_path / "cases.toml").write_text(
        '[[cases]]\nprompt = "2 + 2 ="\nexpected = "4"\n\n[[cases]]\nprompt = "Spell cat backwards"\nexpected = "tac"\n'
    )
    p = probe(tmp_path, cases="cases.toml", threshold=0.9, rule="confident")
    # 2/2 passes, but the Wilson lower bound of 2/2 is about 0.34: not enough cases to be sure.
    obs = p.judge([{"output": "4"}, {"output": "tac"}])
    assert obs.verdict is Verdict.SKIP and "inconclusive" in obs.summary
    obs = p.judge([{"output": "3"}, {"error": "boom"}])
    assert obs.verdict is Verdict.BAD and obs.counts == (2, 2)  # upper bound of 0/2 is about 0.66
    assert obs.evidence["failures"][1]["error"] == "boom"


@pytest.mark.parametrize(
    "output, expected, how, ok",
    [
        (" Paris\n", "Paris", "exact", True),
        ("Paris.", "Paris", "exact", False),
        (2, 2, "exact", True),
        (2, "2", "exact", True),
        (True, 1, "exact", False),
        ([1, 2], [1, 2], "exact", True),
        ("The sky is blue", "blue", "contains", True),
        ("Jupiter!", r"^Jup", "regex", True),
        ("a Jupiter", r"^Jup", "regex", False),
    ],
)
def test_matching(output, expected, how, ok):
    assert matches(output, expected, how) is ok


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"input": 1}\n', "needs `expected`"),
        ('{"input": 1, "prompt": "x", "expected": 1}\n', "exactly one of `input`"),
        ('{"prompt": "x", "expected": "(", "match": "regex"}\n', "invalid regex"),
        ('{"prompt": "x", "expected": "y", "match": "fuzzy"}\n', "match must be one of"),
        ('{"prompt": "x", "expectd": "y"}\n', "unknown key(s) expectd"),
        ("not json\n", "cannot parse the cases file"),
        ("\n", "holds no cases"),
    ],
)
def test_bad_cases_file_is_a_usage_error(content, message, tmp_path):
    (tmp_path / "cases.jsonl").write_text(content)
    with pytest.raises(UsageError) as err:
        probe(tmp_path, cases="cases.jsonl")
    assert message in str(err.value)


def test_missing_cases_file_names_the_fix(tmp_path):
    with pytest.raises(UsageError, match="`cases` file of a `basic` probe not found: nope.jsonl"):
        probe(tmp_path, cases="nope.jsonl")
    with pytest.raises(UsageError, match="did you mean `threshold`"):
        mf.text_cases(tmp_path / "c.jsonl")
        probe(tmp_path, cases="c.jsonl", treshold=0.9)


def test_the_model_can_load_in_another_interpreter(tmp_path):
    import sys

    mf.text_cases(tmp_path / "cases.jsonl")
    p = probe(tmp_path, cases="cases.jsonl", python=sys.executable)
    assert p.config()["python"] == sys.executable  # a venv's symlink is kept, not resolved
    obs = p.run(mf.make_ctx(mf.text_project(tmp_path / "ws", "ok"), tmp_path / "logs"))
    assert obs.verdict is Verdict.GOOD
    with pytest.raises(UsageError, match="`python` of a `basic` probe not found: no-such-python"):
        probe(tmp_path, cases="cases.jsonl", python="no-such-python")
