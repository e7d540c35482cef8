"""Literal-table tests of the deterministic search: choices, skips, ambiguity, contradictions."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from bisector.core.errors import ContradictionError, UsageError
from bisector.core.search import Search, SearchResult
from bisector.core.model import Verdict

G, B, S = Verdict.GOOD, Verdict.BAD, Verdict.SKIP


def linear(n: int) -> dict[str, tuple[str, ...]]:
    """c1..cn, newest first (rev-list order); c0 is the good bound outside the set."""
    return {f"c{i}": ((f"c{i - 1}",) if i > 1 else ()) for i in range(n, 0, -1)}


# A merge bubble, newest first:   c1 - a1 - a2 - m - c2      (m merges a2 and b1)
#                                   \---- b1 ----/
BUBBLE = {
    "c2": ("m",),
    "m": ("a2", "b1"),
    "b1": ("c1",),
    "a2": ("a1",),
    "a1": ("c1",),
    "c1": (),
}


def drive(parents: dict, bad: str, truth: dict[str, Verdict]) -> tuple[SearchResult, list[str]]:
    s = Search(parents, bad)
    s.record(bad, B)
    asked = []
    while nxt := s.next():
        (rev,) = nxt
        assert rev not in asked, f"asked {rev} twice"
        asked.append(rev)
        s.record(rev, truth[rev])
    assert s.done
    return s.result(), asked


def truth_linear(n: int, culprit: int, skipped: set[int] = frozenset()) -> dict[str, Verdict]:
    return {f"c{i}": S if i in skipped else (B if i >= culprit else G) for i in range(1, n + 1)}


# (n, culprit, the probes real `git bisect run` made on the same history, in order)
LINEAR_TABLE = [
    (1, 1, []),
    (2, 1, ["c1"]),
    (2, 2, ["c1"]),
    (4, 1, ["c2", "c1"]),
    (4, 3, ["c2", "c3"]),
    (7, 5, ["c3", "c5", "c4"]),
    (8, 8, ["c4", "c6", "c7"]),
    (8, 1, ["c4", "c2", "c1"]),
]


@pytest.mark.parametrize("n,culprit,probes", LINEAR_TABLE)
def test_linear_matches_git_choices(n: int, culprit: int, probes: list[str]) -> None:
    res, asked = drive(linear(n), f"c{n}", truth_linear(n, culprit))
    assert res == SearchResult("found", f"c{culprit}", 1.0, [f"c{culprit}"])
    assert asked == probes


def test_first_question_splits_remaining_mass_in_half() -> None:
    s = Search(linear(100), "c100")
    s.record("c100", B)
    assert s.remaining() == 100
    assert s.estimated_steps() == 7
    assert s.next() == ["c50"]
    s.record("c50", G)
    assert s.remaining() == 50
    assert s.posterior() == {f"c{i}": 1 / 50 for i in range(51, 101)}
    assert s.result().status == "running"


@pytest.mark.parametrize(
    "culprit,probes",
    [
        ("c1", ["a2", "a1", "c1"]),
        ("a1", ["a2", "a1", "c1"]),
        ("a2", ["a2", "a1"]),
        ("b1", ["a2", "m", "b1"]),
        ("m", ["a2", "m", "b1"]),
        ("c2", ["a2", "m"]),
    ],
)
def test_merge_bubble_matches_git_choices(culprit: str, probes: list[str]) -> None:
    anc = {"c1": {"c1"}, "a1": {"c1", "a1"}, "a2": {"c1", "a1", "a2"}, "b1": {"c1", "b1"}}
    anc["m"] = anc["a2"] | anc["b1"] | {"m"}
    anc["c2"] = anc["m"] | {"c2"}
    truth = {r: B if culprit in anc[r] else G for r in BUBBLE}
    res, asked = drive(BUBBLE, "c2", truth)
    assert (res.status, res.culprit) == ("found", culprit)
    assert asked == probes


def test_skip_steps_around_and_finds_culprit() -> None:
    res, asked = drive(linear(16), "c16", truth_linear(16, 10, skipped={8}))
    assert res.culprit == "c10"
    assert asked.count("c8") == 1 and asked[0] == "c8"


def test_only_skipped_revisions_separate_suspects_is_ambiguous() -> None:
    res, asked = drive(linear(10), "c10", truth_linear(10, 6, skipped={4, 5, 6}))
    assert res.status == "ambiguous"
    assert res.culprit is None
    assert sorted(res.candidates) == ["c4", "c5", "c6", "c7"]  # the skipped ones and the first bad
    assert res.probability == pytest.approx(1 / 4)


def test_skip_choice_replays_identically() -> None:
    def run() -> list[str]:
        return drive(linear(200), "c200", truth_linear(200, 77, skipped=set(range(60, 140))))[1]

    assert run() == run()


def test_skipped_stretch_is_jumped_not_walked() -> None:
    # A broken build over 80 of 200 commits around the midpoint: the search jumps out of it.
    res, asked = drive(linear(200), "c200", truth_linear(200, 150, skipped=set(range(60, 140))))
    assert res.culprit == "c150"
    # (real `git bisect run` 2.39 probed 44 revisions inside the stretch, 57 in all, on this history)
    assert sum(1 for r in asked if 60 <= int(r[1:]) < 140) <= 5


def test_never_asks_an_implied_question() -> None:
    s = Search(linear(8), "c8")
    s.record("c8", B)
    s.record("c6", B)  # the session may record things the search did not ask
    s.record("c2", G)
    s.record("c7", B)  # implied: already known bad, consistent, changes nothing
    s.record("c1", G)  # implied good
    asked = []
    while nxt := s.next():
        asked += nxt
        s.record(nxt[0], B if nxt[0] in ("c5", "c6") else G)
    assert set(asked) <= {"c3", "c4", "c5"}
    assert s.result().culprit == "c5"


@pytest.mark.parametrize(
    "observations,message",
    [
        ([("c5", B), ("c7", G)], "c7 observed good, but its ancestor c5 was observed bad"),
        ([("c5", G), ("c3", B)], "c3 observed bad, but its descendant c5 was observed good"),
        ([("c5", B), ("c5", G)], "c5 observed good, but it was observed bad before"),
        ([("c8", G)], "c8 observed good, but it was observed bad before"),
    ],
)
def test_contradictions_name_the_revisions(observations: list, message: str) -> None:
    s = Search(linear(8), "c8")
    s.record("c8", B)
    for rev, v in observations[:-1]:
        s.record(rev, v)
    before = s.posterior()
    with pytest.raises(ContradictionError) as err:
        s.record(*observations[-1])
    assert str(err.value) == message
    assert "\n" not in str(err.value)
    assert s.posterior() == before  # a rejected observation changes nothing


def test_merge_contradiction_without_direct_ancestry() -> None:
    s = Search(BUBBLE, "c2")
    s.record("c2", B)
    s.record("a2", G)
    s.record("b1", G)
    s.record("m", G)
    assert s.result().culprit == "c2"
    with pytest.raises(ContradictionError, match="c2 observed good"):
        s.record("c2", G)


def test_errors_for_bad_input() -> None:
    with pytest.raises(UsageError, match="not among the candidates"):
        Search(linear(3), "c9")
    with pytest.raises(UsageError, match="not an ancestor"):
        Search({"x": (), "y": ()}, "x")
    s = Search(linear(3), "c3")
    with pytest.raises(UsageError, match="unknown revision"):
        s.record("zz", G)
    with pytest.raises(UsageError, match="abort"):
        s.record("c1", Verdict.ABORT)


def test_parallel_next_returns_distinct_quantiles() -> None:
    s = Search(linear(99), "c99")
    s.record("c99", B)
    assert s.next(3) == ["c25", "c49", "c74"]


def test_non_topological_dict_order_is_accepted() -> None:
    parents = dict(reversed(list(linear(6).items())))  # oldest first
    res, _ = drive(parents, "c6", truth_linear(6, 4))
    assert res.culprit == "c4"


@pytest.mark.parametrize("module", ["bisector.core.search", "bisector.core.dag", "bisector.core.noise"])
def test_search_module_imports_only_the_standard_library_and_numpy(module: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    tree = ast.parse(Path(mod.__file__).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0] if node.level == 0 else "bisector")
    allowed = set(sys.stdlib_module_names) | {"bisector", "numpy"}
    assert names <= allowed, names - allowed
    from_bisector = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bisector")
    }
    assert from_bisector <= {"bisector.core.model", "bisector.core.errors", "bisector.core.dag", "bisector.core.noise",
                             "bisector.core.arrays"}
