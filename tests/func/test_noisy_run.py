"""Noisy searches end to end: repeats get BISECTOR_RUN, and a probe declared deterministic gets a fresh build."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.cli import bisect, bisector, journal_events
from tests.fixtures.repos import GitRepo, linear_history


def flaky_probe(tmp_path: Path, lie_at: int) -> Path:
    """Right answers, except the first run at commit `lie_at`, which fails. Logs commit, run."""
    p = tmp_path / "probe.sh"
    p.write_text(
        "#!/bin/sh\n"
        f'echo "$(cat n.txt) $BISECTOR_RUN" >> {tmp_path}/runs.log\n'
        f'[ "$(cat n.txt)" -eq {lie_at} ] && [ "$BISECTOR_RUN" = 1 ] && exit 1\n'
        "grep -q broken state.txt && exit 1\nexit 0\n"
    )
    p.chmod(0o755)
    return p


def test_repeats_see_their_run_number_and_survive_a_lie(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 40, culprit=25)
    probe = flaky_probe(tmp_path, lie_at=21)  # the first commit the search tests
    res = bisect(repo.path, shas[0], probe, "--noise", "0.1")
    assert res.returncode == 0, res.stderr
    assert f"{shas[24]} is the first bad commit" in res.stdout and "Probability: 0.99" in res.stdout
    runs = [line.split() for line in (tmp_path / "runs.log").read_text().splitlines()]
    assert ["21", "1"] in runs  # the lie was told...
    repeated = {c for c, n in runs if n == "2"}
    assert repeated and all([c, "1"] in runs for c in repeated)  # ...and repeats count their runs
    assert any(e["event"] == "posterior" for e in journal_events(repo.path))


def test_deterministic_probe_repeats_rebuild(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 40, culprit=25)
    repo.commit({"bisector.toml": (
        '[build]\ncommand = "cp state.txt model.txt"\noutputs = ["model.txt"]\n\n'
        f'[probe]\nrun = "{flaky_probe(tmp_path, lie_at=21)}"\nrepeatable = false\n'
    )}, "config")
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--noise", "0.1")
    assert res.returncode == 0, res.stderr
    steps = [e for e in journal_events(repo.path) if e["event"] == "step"]
    seen: set[str] = set()
    for e in steps:
        if e["commit"] in seen:
            assert e["build"]["status"] == "ok"  # a repeat rebuilt instead of restoring the cache
        seen.add(e["commit"])
    assert len(seen) < len(steps)  # there were repeats
