"""The candidate graph stays linear in memory at 100,000 commits (tracemalloc)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from bisector.core.dag import Dag
from bisector.core.model import Verdict
from bisector.core.search import Search


def linear(n: int) -> dict[str, tuple[str, ...]]:
    return {f"c{i}": ((f"c{i - 1}",) if i > 1 else ()) for i in range(n, 0, -1)}


def merges(n: int) -> dict[str, tuple[str, ...]]:
    """A main line with a 3-commit branch merged every 10 commits, newest first."""
    parents: list[tuple[int, ...]] = [()]
    tip = 0
    while len(parents) < n - 10:
        side = tip
        for _ in range(3):
            parents.append((side,))
            side = len(parents) - 1
        for _ in range(6):
            parents.append((tip,))
            tip = len(parents) - 1
        parents.append((tip, side))
        tip = len(parents) - 1
    return {f"c{i}": tuple(f"c{p}" for p in parents[i]) for i in range(len(parents) - 1, -1, -1)}


def test_a_100k_commit_graph_and_search_fit_a_linear_memory_budget() -> None:
    parents = linear(100_000)
    tracemalloc.start()
    s = Search(parents, "c100000")
    s.record("c100000", Verdict.BAD)
    first = s.next()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # git's approx_halfway: the first commit (oldest first) within nr/1024 = 97 of half.
    assert first == ["c49952"]
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MB"  # the bitset DAG took ~640 MB here


def test_a_graph_with_a_merge_every_10_commits_keeps_reachability_between_chains_only() -> None:
    parents = merges(20_000)
    tracemalloc.start()
    dag = Dag(parents)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert dag.n_chains < len(parents) // 2
    assert peak < 30 * 2**20, f"peak {peak / 2**20:.0f} MB"
    # Closure sums agree with a walk over the parents.
    import numpy as np

    ones = np.ones(dag.n)
    anc = dag.anc_sums(ones)
    desc = dag.desc_sums(np.ones(dag.n, dtype=np.int64))
    for i in (0, 5, 17, dag.n // 2, dag.n - 1):
        seen, todo = {i}, [i]
        while todo:
            for p in dag.parents_of(todo.pop()):
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        assert anc[i] == len(seen)
        assert int(dag.anc_mask(i).sum()) == len(seen)
        assert desc[i] == sum(1 for j in range(dag.n) if dag.is_ancestor(i, j))


def test_revisions_behave_as_the_dict_of_parents_they_replace() -> None:
    from bisector.core.dag import Revisions

    parents = {"d": ("c", "b", "c"), "c": ("a",), "b": ("a", "x"), "a": ()}  # x: not a candidate
    rv = Revisions.from_mapping(parents)
    assert list(rv) == ["d", "c", "b", "a"] and len(rv) == 4
    assert rv["d"] == ("c", "b") and rv["b"] == ("a",) and rv["a"] == ()
    assert "c" in rv and "x" not in rv and rv.get("x") is None
    assert rv.largest(rv.find_many(np.array([b"a", b"b", b"c", b"d"])), 2) == [0, 1]  # "d", "c"
    assert Search(rv, "d").next() == Search(parents, "d").next()


def test_100k_revisions_take_under_100_bytes_a_commit() -> None:
    from bisector.core.dag import Revisions

    shas = np.array([f"{i:040x}".encode() for i in range(100_000, 0, -1)])
    tracemalloc.start()
    rv = Revisions(shas, np.concatenate([np.arange(100_000), [99_999]]), np.arange(1, 100_000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert rv[f"{5:040x}"] == (f"{4:040x}",)
    assert peak < 100 * 100_000, f"peak {peak / 2**20:.1f} MB"
