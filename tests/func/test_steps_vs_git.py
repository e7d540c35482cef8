"""A whole `bisector run` (bounds, search, confirmation; counted from its journal) against real
`git bisect run` on small histories shaped like real workflows (tests/fixtures/workflows.py):
the default bounds policy probes at most one commit more than git, --trust-bounds exactly as
many, and the search alone never more. scripts/bench_steps.py measures the same at full size."""

from __future__ import annotations

import pytest

from tests.fixtures import gitgen

SIZE = 40


@pytest.mark.parametrize("kind", ["github", "gitflow", "nested"])
def test_whole_run_costs_at_most_one_probe_more_than_git(kind: str, tmp_path) -> None:
    parents = gitgen.shape(kind, SIZE)
    roots = [i for i, ps in enumerate(parents) if 0 in ps]  # culprits whose parent is the good bound
    culprits = sorted({roots[-1], len(parents) // 3, len(parents) // 2, len(parents) - 2, len(parents) - 1})
    repo = gitgen.build(kind, SIZE, culprits, tmp_path / "repo")
    for c in culprits:
        first, git = gitgen.git_bisect(repo, c)
        lazy = gitgen.bisector_run(repo, c)
        trust = gitgen.bisector_run(repo, c, "--trust-bounds")
        assert first == lazy["culprit"] == trust["culprit"] == repo.shas[c], f"{kind}: culprit {c}"
        assert lazy["probes"] <= git + 1, f"{kind}: culprit {c}: {lazy} vs git {git}"
        assert trust["probes"] == git, f"{kind}: culprit {c}: {trust} vs git {git}"
        assert max(lazy.get("search", 0), trust.get("search", 0)) <= git, f"{kind}: culprit {c}"
        if c in roots and c != len(parents) - 1:
            # The culprit's parent is the good bound: that is the one bound the default policy probes
            # (the culprit, a bad candidate, implied the bad bound bad).
            assert lazy.get("good-bound") == 1 and "bad-bound" not in lazy, f"{kind}: culprit {c}: {lazy}"
