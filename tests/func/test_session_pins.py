"""Pins and past sessions wired into `bisector run`: @NAME, no --good, --pin-good, --from (manual undo: tests/e2e)."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.cli import bisect, bisector, completed_runs, journal_events, probe_script
from tests.fixtures.repos import GitRepo, linear_history


def test_pins_as_good_bound(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 16, culprit=11)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "pin", "monday", "--rev", shas[2], "--note", "last known good")
    assert res.returncode == 0, res.stderr
    res = bisect(repo.path, "@monday", probe)
    assert res.returncode == 0, res.stderr
    assert f"{shas[10]} is the first bad commit" in res.stdout
    assert journal_events(repo.path)[0]["goods"] == [shas[2]]
    # No --good: the most recent pin before the bad revision is offered.
    res = bisector(repo.path, "run", "--bad", "main", "--probe", str(probe), "--pin-good", "friday")
    assert res.returncode == 0, res.stderr
    assert "using pin @monday" in res.stderr
    assert "Pinned @friday" in res.stdout
    pins = bisector(repo.path, "pins")
    assert "friday" in pins.stdout and "monday" in pins.stdout
    show = bisector(repo.path, "pin", "show", "friday")
    assert shas[9] in show.stdout  # the culprit's parent, observed good
    res = bisect(repo.path, "@nosuchpin", probe)
    assert res.returncode == 2 and res.stderr.startswith("Error: ") and "nosuchpin" in res.stderr


def test_from_reuses_valid_observations(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 30, culprit=20)
    probe = probe_script(tmp_path)
    first = bisect(repo.path, shas[0], probe)
    assert first.returncode == 0, first.stderr
    session = journal_events(repo.path)[0]["session"]
    runs = len(completed_runs(tmp_path))
    res = bisect(repo.path, shas[0], probe, "--from", session)
    assert res.returncode == 0, res.stderr
    assert f"{shas[19]} is the first bad commit" in res.stdout
    assert len(completed_runs(tmp_path)) == runs  # nothing probed again
    steps = [e for e in journal_events(repo.path) if e["event"] == "step"]
    assert steps and all(e.get("reused_from") for e in steps)


def _good_bound_steps(repo: GitRepo) -> list[dict]:
    return [e for e in journal_events(repo.path) if e["event"] == "step" and e["role"] == "good-bound"]


def _verified_pin(repo: GitRepo, tmp_path: Path, extra_toml: str = "") -> list[str]:
    """A 16-commit history (first bad: shas[10]), bisector.toml naming the probe, and pin
    `tuesday` made with `--verify` at the culprit's parent shas[9]. Returns the shas."""
    shas = linear_history(repo, 16, culprit=11)
    probe = probe_script(tmp_path)
    (repo.path / "bisector.toml").write_text(f'[probe]\ncommand = "{probe}"\n{extra_toml}')
    res = bisector(repo.path, "pin", "tuesday", "--rev", shas[9], "--verify")
    assert res.returncode == 0, res.stderr
    return shas


def test_a_pin_verified_with_the_same_probe_is_not_probed(repo: GitRepo, tmp_path: Path) -> None:
    # Check both bounds (the strictest policy): the verified pin is still not probed.
    shas = _verified_pin(repo, tmp_path, '\n[search]\nbounds = "check"\n')
    assert 'probe_digest = "' in (repo.path / ".bisector" / "pins.toml").read_text()
    res = bisector(repo.path, "run", "--good", "@tuesday", "--bad", "main")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[10]} is the first bad commit" in res.stdout
    start = journal_events(repo.path)[0]
    why = start["pinned_bounds"][shas[9]]
    assert why["probed"] is False and why["why"].startswith("pin tuesday verified good at ")
    assert why["why"].endswith("with the same probe and build")
    assert "Good bound " in res.stderr and "not probed (pin tuesday verified good" in res.stderr
    assert not _good_bound_steps(repo)  # neither as a bound nor as the culprit's parent
    assert shas[9] not in [e["commit"] for e in journal_events(repo.path) if e["event"] == "step"]


def test_a_pin_verified_with_another_probe_is_checked(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 16, culprit=11)
    probe = probe_script(tmp_path)
    res = bisect(repo.path, shas[0], probe, "--pin-good", "friday")  # pins the culprit's parent, shas[9]
    assert res.returncode == 0, res.stderr
    # The same probe: the pin (observed good by that session) is trusted.
    res = bisect(repo.path, "@friday", probe)
    assert res.returncode == 0, res.stderr
    assert journal_events(repo.path)[0]["pinned_bounds"][shas[9]]["probed"] is False
    assert not _good_bound_steps(repo)
    # Another probe (one more line in the script): the pin's result says nothing about it.
    other = probe_script(tmp_path / "other", body="true") if (tmp_path / "other").mkdir() is None else None
    res = bisect(repo.path, "@friday", other)
    assert res.returncode == 0, res.stderr
    why = journal_events(repo.path)[0]["pinned_bounds"][shas[9]]
    assert why == {"probed": True, "why": why["why"]} and "with another probe" in why["why"]
    assert [e["commit"] for e in _good_bound_steps(repo)] == [shas[9]]  # the culprit's parent: checked


def test_a_pin_verified_under_another_build_is_checked(repo: GitRepo, tmp_path: Path) -> None:
    """The pin's verdict came from the probe after a build: another build command can change it,
    so the same probe alone does not make the pin trusted."""
    shas = _verified_pin(repo, tmp_path)
    res = bisector(repo.path, "run", "--good", "@tuesday", "--bad", "main", "--build", "touch built")
    assert res.returncode == 0, res.stderr + res.stdout
    why = journal_events(repo.path)[0]["pinned_bounds"][shas[9]]
    assert why["probed"] is True and "with another probe or build" in why["why"]
    assert [e["commit"] for e in _good_bound_steps(repo)] == [shas[9]]
    # The same build as the verification: trusted again.
    res = bisector(repo.path, "run", "--good", "@tuesday", "--bad", "main")
    assert res.returncode == 0, res.stderr + res.stdout
    assert journal_events(repo.path)[0]["pinned_bounds"][shas[9]]["probed"] is False


def test_the_api_treats_pins_as_the_command_line_does(repo: GitRepo, tmp_path: Path) -> None:
    import bisector as api

    shas = _verified_pin(repo, tmp_path)
    result = api.bisect(good="@tuesday", bad="main", repo=repo.path)
    assert result.culprit == shas[10]
    assert journal_events(repo.path)[0]["pinned_bounds"][shas[9]]["probed"] is False
    assert not _good_bound_steps(repo)
    # No good: the most recent pin before the bad revision, said through the handler.
    said: list[str] = []

    class Handler(api.Handler):
        def on_message(self, text: str) -> None:
            said.append(text)

    result = api.bisect(bad="main", repo=repo.path, handler=Handler())
    assert result.culprit == shas[10]
    assert journal_events(repo.path)[0]["goods"] == [shas[9]]
    assert any("using pin @tuesday" in line for line in said), said
