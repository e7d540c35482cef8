"""Our deterministic search against real `git bisect run` on generated histories of several shapes."""

from __future__ import annotations

import pytest

from tests.fixtures import gitgen

SIZE = 40
SAMPLES = 8  # culprit positions per shape, spread over the history (the bad head included)


@pytest.mark.slow
@pytest.mark.parametrize("kind", gitgen.SHAPES)
def test_same_culprit_and_no_more_probes_than_git(kind: str, tmp_path) -> None:
    n = len(gitgen.shape(kind, SIZE))
    culprits = sorted({1 + (n - 2) * j // (SAMPLES - 1) for j in range(SAMPLES)})
    repo = gitgen.build(kind, SIZE, culprits, tmp_path / "repo")
    ours_total = git_total = 0
    for c in culprits:
        git_first, git_probes = gitgen.git_bisect(repo, c)
        our_first, our_probes = gitgen.our_bisect(repo, c)
        assert git_first == repo.shas[c]
        assert our_first == git_first, f"{kind}: culprit {c}"
        ours_total += our_probes
        git_total += git_probes
    assert ours_total <= git_total, f"{kind}: ours {ours_total} probes vs git {git_total}"
