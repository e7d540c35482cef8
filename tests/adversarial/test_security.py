"""Hostile content (docs/security.md): each test plants it, with a canary file that the hostile
code would write, and shows that it is never run and never escapes.

- a committed `.bisector/frozen/<digest>-check.sh` (a file, or a symlink) and a probe that
  rewrites its own frozen copy: the user's probe is what runs, in this and later sessions;
- a committed (or copied) unfinished journal, and resuming with other flags: not resumed,
  its build and probe not run; one line that names `bisector reset`;
- `bisector restore` of a pin whose revision holds symlinks out of the destination;
- a billion-laughs or deeply nested params.yaml, bisector.toml, pins file or journal line.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from bisector.core.model import Verdict
from bisector.probes.base import Observation, ProbeContext
from bisector.probes.suite import SuiteResult
from bisector.run.session import Handler, RunOptions, Session
from tests.fixtures.cli import bisect, bisector, journal_events, journals
from tests.fixtures.repos import GitRepo, linear_history, snapshot


def one_error_line(res: Any, code: int = 2) -> str:
    """The run failed with exit `code` and exactly one `Error: ...` line, no traceback."""
    assert res.returncode == code, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, res.stderr
    return errors[0]


def user_probe(tmp_path: Path) -> Path:
    """The user's probe, outside the repository: bad when state.txt says broken."""
    p = tmp_path / "check.sh"
    p.write_text("#!/bin/sh\ngrep -q broken state.txt && exit 1\nexit 0\n")
    p.chmod(0o755)
    return p


def hostile_script(canary: Path) -> str:
    """A probe that writes the canary and calls every commit good (a silent wrong culprit)."""
    return f"#!/bin/sh\necho ran >> {canary}\nexit 0\n"


# ------------------------------------------------------------------ frozen probe files
@pytest.mark.parametrize("as_symlink", [False, True], ids=["file", "symlink"])
def test_a_committed_frozen_copy_never_replaces_the_users_probe(repo: GitRepo, tmp_path: Path, as_symlink: bool) -> None:
    canary = tmp_path / "canary"
    probe = user_probe(tmp_path)
    digest = hashlib.sha256(probe.read_bytes()).hexdigest()
    planted = f".bisector/frozen/{digest[:12]}-check.sh"
    hostile = tmp_path / "hostile.sh"
    hostile.write_text(hostile_script(canary))
    hostile.chmod(0o755)
    shas = linear_history(repo, 12, culprit=7)
    if as_symlink:
        (repo.path / ".bisector" / "frozen").mkdir(parents=True)
        (repo.path / planted).symlink_to(hostile)
        repo.commit({}, "a frozen copy, as a symlink")
    else:
        repo.write({planted: hostile_script(canary)})
        (repo.path / planted).chmod(0o755)
        repo.commit({}, "a frozen copy")
    res = bisect(repo.path, shas[0], probe)
    assert res.returncode == 0, res.stderr
    assert f"{shas[6]} is the first bad commit" in res.stdout
    assert not canary.exists()
    # The copy holds the user's probe, as a file; the symlink's target was not written through.
    assert not (repo.path / planted).is_symlink()
    assert (repo.path / planted).read_bytes() == probe.read_bytes()
    assert hostile.read_text() == hostile_script(canary)


def test_a_probe_that_rewrites_its_frozen_copy_poisons_nothing(repo: GitRepo, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    probe = tmp_path / "check.sh"
    # Replaces its own file ($0, the frozen copy) by the hostile script, then judges honestly.
    probe.write_text(
        "#!/bin/sh\n"
        f"printf '%s' '{hostile_script(canary)}' > \"$0.new\" && chmod +x \"$0.new\" && mv \"$0.new\" \"$0\"\n"
        "grep -q broken state.txt && exit 1\nexit 0\n"
    )
    probe.chmod(0o755)
    shas = linear_history(repo, 20, culprit=13)
    for _ in range(2):  # a second session reuses the same frozen copy
        res = bisect(repo.path, shas[0], probe)
        assert res.returncode == 0, res.stderr
        assert f"{shas[12]} is the first bad commit" in res.stdout
    assert not canary.exists()
    frozen = json.loads(json.dumps(journal_events(repo.path)[0]["config"]["probes"]))["probes"][0]["frozen"]
    for path, digest in frozen.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest  # restored after each step
    restored = [e for e in journal_events(repo.path) if e["event"] == "step"
                and e["observations"][0].get("evidence", {}).get("frozen_restored")]
    assert restored  # and said so in the journal


# ------------------------------------------------------------------ journals from others
def foreign_journal(tmp_path: Path, repo: GitRepo, good: str, build: str, probe: str, owner: Any = None) -> str:
    """An unfinished journal as someone else's checkout wrote it (its own owner secret), with
    the given build and probe frozen in: the text of the `.jsonl` file."""
    other = GitRepo(tmp_path / "other")
    repo.git("clone", "-q", str(repo.path), str(other.path))
    res = bisect(other.path, good, user_probe(tmp_path), "--max-steps", "1")
    assert res.returncode in (0, 1), res.stderr
    (path,) = journals(other.path)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    events = [e for e in events if e["event"] != "end"]
    start = events[0]
    start["search"]["max_steps"] = None
    start.pop("flags", None)
    start["config"]["build"]["command"] = build
    start["config"]["probe_specs"] = [{"type": "command", "run": probe}]
    start["config"]["probes"]["probes"][0].update(run=probe, frozen={})
    if owner is not None:
        start["owner"] = owner
    return "".join(json.dumps(e) + "\n" for e in events)


@pytest.mark.parametrize("owner", ["other", "forged", "none"])
def test_a_committed_unfinished_journal_is_never_resumed(repo: GitRepo, tmp_path: Path, owner: str) -> None:
    canary = tmp_path / "canary"
    shas = linear_history(repo, 12, culprit=7)
    forged = {"forged": {"user": getpass.getuser(), "host": socket.gethostname(), "mac": "0" * 64},
              "none": {}, "other": None}[owner]
    text = foreign_journal(tmp_path, repo, shas[0], f"echo build >> {canary}", f"echo probe >> {canary}", forged)
    if owner == "none":
        start, rest = text.split("\n", 1)
        event = json.loads(start)
        event.pop("owner")
        text = json.dumps(event) + "\n" + rest
    session = json.loads(text.split("\n", 1)[0])["session"]
    repo.commit({f".bisector/sessions/{session}.jsonl": text}, "an unfinished session")
    before = snapshot(repo.path)
    probe = user_probe(tmp_path)
    for args in (["run"], ["run", "--bad", "main", "--good", shas[0], "--probe", str(probe), "--build", "true"]):
        line = one_error_line(bisector(repo.path, *args))
        assert "is not resumed" in line and "bisector reset" in line
    assert not canary.exists()
    assert snapshot(repo.path) == before
    # As the line says: reset drops it, and the user's own search runs.
    assert bisector(repo.path, "reset").returncode == 0
    res = bisect(repo.path, shas[0], probe)
    assert res.returncode == 0, res.stderr
    assert f"{shas[6]} is the first bad commit" in res.stdout
    assert not canary.exists()


class StopAfter:
    """Scripted verdicts (state.txt's), interrupted (KeyboardInterrupt) after `stop_after` steps."""

    name = "scripted"

    def __init__(self, shas: list[str], culprit: int, stop_after: int | None = None):
        self.verdicts = {s: Verdict.BAD if i >= culprit else Verdict.GOOD for i, s in enumerate(shas)}
        self.stop_after, self.calls = stop_after, 0

    def config(self) -> dict[str, Any]:
        return {"probes": [{"name": "scripted"}]}

    def run(self, ctx: ProbeContext) -> SuiteResult:
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        v = self.verdicts[ctx.commit]
        return SuiteResult(v, [Observation(probe="scripted", verdict=v, summary=v.value)])


def test_resuming_with_other_flags_is_refused_with_the_difference(repo: GitRepo, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    shas = linear_history(repo, 33, culprit=7)
    options = RunOptions(repo=repo.path, bad="main", goods=[shas[0]], probe="true")
    with pytest.raises(KeyboardInterrupt):
        Session(options, Handler(), suite_factory=lambda *a: StopAfter(shas, 6, stop_after=3)).run()
    hostile = tmp_path / "evil.sh"
    hostile.write_text(hostile_script(canary))
    hostile.chmod(0o755)
    line = one_error_line(bisector(repo.path, "run", "--probe", str(hostile)))
    assert "other flags" in line and "--probe" in line and "'true' then" in line and "bisector reset" in line
    line = one_error_line(bisector(repo.path, "run", "--build", f"echo >> {canary}", "--max-steps", "9"))
    assert "--build" in line and "None then" in line
    assert not canary.exists()
    # The same flags (or none) resume it: this user's own session, started here.
    resumed = Session(RunOptions(repo=repo.path, probe="true"), Handler(),
                      suite_factory=lambda *a: StopAfter(shas, 6)).run()
    assert resumed.resumed and resumed.culprit == shas[6]


# ------------------------------------------------------------------ restore
def test_restore_never_writes_through_a_symlink_of_the_pinned_revision(repo: GitRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo.commit({"a.txt": "1\n"}, "base")
    (repo.path / "data").symlink_to(outside)
    code = repo.commit({}, "data is a symlink out of the checkout")
    repo.write({"data": None})
    data = repo.commit({"data/x.dvc": "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  path: x\n"}, "data file")
    res = bisector(repo.path, "pin", "evil", "--rev", code, "--data-rev", data)
    assert res.returncode == 0, res.stderr
    line = one_error_line(bisector(repo.path, "restore", "evil", str(tmp_path / "dest")))
    assert "symlink out of" in line
    assert list(outside.iterdir()) == []  # the canary: nothing was written there


def test_restore_never_writes_dvc_config_through_a_dvc_symlink(repo: GitRepo, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    repo.commit({"a.txt": "1\n"}, "base")
    (repo.path / ".dvc").symlink_to(outside)
    code = repo.commit({}, ".dvc is a symlink out of the checkout")
    assert bisector(repo.path, "pin", "evil", "--rev", code).returncode == 0
    line = one_error_line(bisector(repo.path, "restore", "evil", str(tmp_path / "dest")))
    assert "symlink out of" in line
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("link", [".bisector", ".bisector/sessions", ".bisector/frozen"])
def test_a_committed_bisector_symlink_is_never_written_through(repo: GitRepo, tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    shas = linear_history(repo, 6, culprit=4)
    (repo.path / link).parent.mkdir(parents=True, exist_ok=True)
    (repo.path / link).symlink_to(outside)
    repo.commit({}, f"{link} is a symlink out of the checkout")
    line = one_error_line(bisect(repo.path, shas[0], user_probe(tmp_path)))
    assert "symlink out of" in line
    if link == ".bisector":
        assert "symlink out of" in one_error_line(bisector(repo.path, "pin", "p"))
    assert list(outside.iterdir()) == []


def test_a_committed_pins_tmp_symlink_is_replaced_not_followed(repo: GitRepo, tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("untouched\n")
    repo.commit({"a.txt": "1\n"}, "base")
    (repo.path / ".bisector").mkdir()
    (repo.path / ".bisector" / "pins.toml.tmp").symlink_to(canary)
    repo.commit({}, "a symlink where bisector writes its temporary pins file")
    res = bisector(repo.path, "pin", "p")
    assert res.returncode == 0, res.stderr
    assert canary.read_text() == "untouched\n"


# ------------------------------------------------------------------ bounded inputs
BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)


@pytest.mark.parametrize("params", [BILLION_LAUGHS, "a: " + "[" * 5000 + "]" * 5000 + "\n"],
                         ids=["billion-laughs", "deep"])
def test_a_hostile_params_yaml_is_one_line_not_a_hang(repo: GitRepo, params: str) -> None:
    repo.commit({"params.yaml": params}, "hostile params")
    started = time.monotonic()
    line = one_error_line(bisector(repo.path, "pin", "p", timeout=60))
    assert time.monotonic() - started < 30
    assert "params.yaml" in line


def test_a_deeply_nested_bisector_toml_is_one_line(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 4, culprit=3)
    repo.write({"bisector.toml": "[search]\nx = " + "[" * 3000 + "]" * 3000 + "\n"})
    line = one_error_line(bisect(repo.path, shas[0], user_probe(tmp_path)))
    assert "bisector.toml" in line


def test_a_deeply_nested_pins_file_is_one_line(repo: GitRepo) -> None:
    repo.commit({"a.txt": "1\n"}, "base")
    repo.write({".bisector/pins.toml": "[pins.x]\ncommit = " + "[" * 3000 + "]" * 3000 + "\n"})
    line = one_error_line(bisector(repo.path, "pins"))
    assert "pins.toml" in line


def test_a_deeply_nested_journal_line_is_one_line(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 6, culprit=4)
    deep = '{"v": 1, "event": "step", "x": ' + "[" * 5000 + "]" * 5000 + "}\n"
    repo.write({".bisector/sessions/20990101-000000.000-abcd.jsonl": deep})
    line = one_error_line(bisect(repo.path, shas[0], user_probe(tmp_path)))
    assert "not a journal line" in line
