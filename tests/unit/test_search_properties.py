"""Properties of the deterministic search on random DAGs with a monotone predicate (hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from bisector.core.search import Search
from bisector.core.model import Verdict
from tests.fixtures.histories import ancestors, as_candidates, is_bad


@st.composite
def dags(draw, max_n: int = 60) -> tuple[list[tuple[int, ...]], int]:
    """Parents by index (0 oldest) of a random DAG with a single head, and a planted culprit."""
    n = draw(st.integers(1, max_n))
    parents: list[tuple[int, ...]] = [()]
    for i in range(1, n):
        first = draw(st.integers(max(0, i - 4), i - 1))
        more = draw(st.lists(st.integers(0, i - 1), max_size=2)) if draw(st.integers(0, 4)) == 0 else []
        parents.append(tuple(dict.fromkeys([first, *more])))
    has_child = {p for ps in parents for p in ps}
    tips = [i for i in range(len(parents)) if i not in has_child]
    if len(tips) > 1:
        parents.append(tuple(tips))
    culprit = draw(st.integers(0, len(parents) - 1))
    return parents, culprit


def run(parents, culprit, skipped=frozenset()):
    anc = ancestors(parents)
    head = f"r{len(parents) - 1}"
    s = Search(as_candidates(parents), head)
    s.record(head, Verdict.BAD)
    asked, log = [], [(head, Verdict.BAD)]
    while nxt := s.next():
        (rev,) = nxt
        assert rev not in asked, f"asked {rev} twice"
        i = int(rev[1:])
        v = Verdict.SKIP if i in skipped else Verdict.BAD if is_bad(anc, i, culprit) else Verdict.GOOD
        before = s.remaining()
        s.record(rev, v)
        if v != Verdict.SKIP:
            assert s.remaining() < before, "a question whose answer was already implied"
        asked.append(rev)
        log.append((rev, v))
    return s, asked, log


@settings(max_examples=150, deadline=None)
@given(dags())
def test_planted_culprit_is_found(case) -> None:
    parents, culprit = case
    s, asked, _ = run(parents, culprit)
    res = s.result()
    assert (res.status, res.culprit, res.probability) == ("found", f"r{culprit}", 1.0)
    assert len(asked) <= len(parents) - 1


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_with_skips_the_answer_is_the_culprit_or_an_ambiguous_list_with_it(case, data) -> None:
    parents, culprit = case
    skipped = set(data.draw(st.lists(st.integers(0, max(0, len(parents) - 2)), max_size=len(parents) // 2)))
    s, asked, _ = run(parents, culprit, frozenset(skipped))
    res = s.result()
    if res.status == "found":
        assert res.culprit == f"r{culprit}"
    else:
        assert res.status == "ambiguous"
        assert f"r{culprit}" in res.candidates
        assert len(res.candidates) >= 2
        # only skipped revisions separate the suspects: all are skipped but the current first bad
        assert len(set(res.candidates) - {f"r{i}" for i in skipped}) <= 1


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2000), st.data())
def test_cost_on_linear_history_is_at_most_ceil_log2(n, data) -> None:
    culprit = data.draw(st.integers(0, n - 1))
    parents = [()] + [(i - 1,) for i in range(1, n)]
    _, asked, _ = run(parents, culprit)
    assert len(asked) <= math.ceil(math.log2(n)) if n > 1 else not asked


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_replaying_the_observations_replays_the_choices(case, data) -> None:
    parents, culprit = case
    skipped = set(data.draw(st.lists(st.integers(0, max(0, len(parents) - 2)), max_size=len(parents) // 3)))
    _, asked, log = run(parents, culprit, frozenset(skipped))
    cut = data.draw(st.integers(1, len(log)))
    s = Search(as_candidates(parents), f"r{len(parents) - 1}")
    for rev, v in log[:cut]:
        s.record(rev, v)
    assert s.next() == ([log[cut][0]] if cut < len(log) else [])
