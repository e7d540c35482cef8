"""Corrupted journals and pins, table-driven: each corruption under each command that reads it.

A journal that cannot be read is one `Error:` line naming the file (and the line, where there is
one) in `run`, `replay`, `journal`, `log`, `sessions`; `bisector reset` always works and sets
the unreadable journal aside, after which `run` starts again. A pin that cannot be read is one
line too, and `pin rm` removes it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fixtures.cli import CliResult, bisector
from tests.fixtures.oneline import Case, Ctx, ids, run_case

SESSION = "20250101-000000.000-abcd"
JOURNAL = f".bisector/sessions/{SESSION}.jsonl"


def _start(ctx: Ctx) -> dict:
    return {"v": 1, "ts": 1, "event": "start", "session": SESSION, "bad": ctx.shas[-1], "goods": [ctx.shas[0]],
            "merge_bases": [], "first_parent": False, "paths": [], "candidates": 5, "search": {},
            "config": {"build": {}, "probes": {"probes": []}, "probe_specs": [], "stop_early": True, "file": {}}}


def _step(ctx: Ctx, **over: object) -> dict:
    return {"v": 1, "ts": 2, "event": "step", "step": 1, "role": "bad_bound", "commit": ctx.shas[-1],
            "verdict": "bad", "build": {"status": "none"}, "observations": [], "duration": 0.1, **over}


def _lines(*events: object) -> bytes:
    return b"".join((e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n" for e in events)


# name -> (what to write at the journal's path, the fragment of the error in `run`)
def _write(make):
    def setup(ctx: Ctx) -> None:
        p = ctx.repo / JOURNAL
        p.parent.mkdir(parents=True, exist_ok=True)
        make(ctx, p)
    return setup


CORRUPTIONS = {
    "garbage-line": (lambda c, p: p.write_bytes(_lines(_start(c), b"this is not json", _step(c))), ":2: not a journal line"),
    "missing-bad": (lambda c, p: p.write_bytes(_lines({k: v for k, v in _start(c).items() if k != "bad"})),
                    ":1: a start event without a bad revision"),
    "missing-session": (lambda c, p: p.write_bytes(_lines({k: v for k, v in _start(c).items() if k != "session"})),
                        ":1: a start event without a session id"),
    "goods-not-list": (lambda c, p: p.write_bytes(_lines({**_start(c), "goods": "main"})), ":1: a start event whose goods"),
    "unknown-verdict": (lambda c, p: p.write_bytes(_lines(_start(c), _step(c, verdict="meh"))), ":2: a step event with an unknown verdict"),
    "step-number-string": (lambda c, p: p.write_bytes(_lines(_start(c), _step(c, step="x"))), ":2: a step event without a step number"),
    "step-without-commit": (lambda c, p: p.write_bytes(_lines(_start(c), {k: v for k, v in _step(c).items() if k != "commit"})),
                            ":2: a step event without a commit"),
    "deep-nesting": (lambda c, p: p.write_bytes(_lines(_start(c), b'{"v": 1, "event": "step", "x": ' + b"[" * 200000
                                                       + b"]" * 200000 + b"}")), ":2: not a journal line"),
    "reordered": (lambda c, p: p.write_bytes(_lines(_step(c), _start(c))), ":1: the journal begins with a 'step' event"),
    "non-utf8": (lambda c, p: p.write_bytes(_lines(_start(c), b'{"v": 1, "event": "step", "commit": "\xff\xfe"}')),
                 ":2: not a journal line"),
    "event-list": (lambda c, p: p.write_bytes(_lines([1, 2, 3])), ":1: not a journal line"),
    "newer-schema": (lambda c, p: p.write_bytes(_lines({**_start(c), "v": 99})), "incompatible bisector"),
    "dev-zero": (lambda c, p: p.symlink_to("/dev/zero"), "is not a regular file"),
    "fifo": (lambda c, p: os.mkfifo(p), "is not a regular file"),
    "directory": (lambda c, p: p.mkdir(), "is not a regular file"),
    "too-large": (lambda c, p: (p.write_bytes(_lines(_start(c))), os.truncate(p, 300 * 1024 * 1024)), "is too large"),
}

# What each command says about an unreadable journal; `journal`, `log` and `report` read the
# latest session, `sessions` all of them.
COMMANDS = {
    "run": ("run", "--good", "{good}", "--bad", "main", "--probe", "{probe}"),
    "journal": ("journal",),
    "log": ("log",),
    "sessions": ("sessions",),
    "replay": ("replay", JOURNAL),
}
START_BROKEN = {"missing-bad", "missing-session", "goods-not-list", "event-list"}
# Line-level damage is skipped with a warning where a session is only shown (journal, log).
TOLERATED = {"garbage-line", "unknown-verdict", "step-number-string", "step-without-commit", "deep-nesting",
             "non-utf8", "reordered"}


def _journal_cases() -> list[Case]:
    cases = []
    for name, (make, fragment) in CORRUPTIONS.items():
        for cmd, args in COMMANDS.items():
            if cmd == "journal" and name in START_BROKEN:  # shown without bounds, said so
                cases.append(Case(f"journal-{name}-{cmd}", args, 0, None, _write(make),
                                  stderr_has="no readable start event"))
            elif cmd in ("journal", "log") and name in TOLERATED:
                cases.append(Case(f"journal-{name}-{cmd}", args, 0, None, _write(make), stderr_has="skipped"))
            elif cmd == "sessions":  # a listing: the journal shows as unreadable (or its bad lines are warned)
                cases.append(Case(f"journal-{name}-{cmd}", args, 0, None, _write(make), after=_listed))
            elif cmd == "replay" and name == "directory":
                cases.append(Case(f"journal-{name}-{cmd}", args, 2, "is a directory", _write(make)))
            else:
                frag = fragment if cmd in ("run", "replay") else SESSION  # views warn the line, then fail
                cases.append(Case(f"journal-{name}-{cmd}", args, 2, frag, _write(make)))
        cases.append(Case(f"journal-{name}-reset", ("reset",), 0, None, _write(make), after=_reset_then_run_starts))
    return cases


def _listed(ctx: Ctx, res: CliResult) -> None:
    assert SESSION in res.stdout + res.stderr
    assert "unreadable" in res.stdout or "skipped" in res.stderr, (res.stdout, res.stderr)


def _reset_then_run_starts(ctx: Ctx, res: CliResult) -> None:
    """After `reset`, the unreadable journal is set aside (kept) and `run` finds the culprit."""
    assert "unreadable journal kept as" in res.stdout, res.stdout
    assert not (ctx.repo / JOURNAL).exists() and not (ctx.repo / JOURNAL).is_symlink()
    again = bisector(ctx.repo, "run", "--good", ctx.shas[0], "--bad", "main", "--probe", str(ctx.probe))
    assert again.returncode == 0 and ctx.shas[3] in again.stdout, again.stderr


# ------------------------------------------------------------------------------ pins
def _pins(text: str | bytes, kind: str = "text"):
    def setup(ctx: Ctx) -> None:
        p = ctx.repo / ".bisector" / "pins.toml"
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "link":
            p.symlink_to(text)
        elif kind == "dir":
            p.mkdir()
        else:
            body = text.format(good=ctx.shas[0]) if isinstance(text, str) else text
            p.write_bytes(body.encode() if isinstance(body, str) else body)
    return setup


PINS = {
    "invalid-toml": (_pins('[pins.v1\ncommit = "x"\n'), "pins.toml:1: invalid TOML", False),
    "short-sha": (_pins('[pins.v1]\ncommit = "abc"\n'), "commit must be a 40-hex sha", True),
    "unknown-field": (_pins('[pins.v1]\ncommit = "{good}"\ncolour = "red"\n'), "unknown field 'colour'", True),
    "bad-name": (_pins('[pins."v 1"]\ncommit = "{good}"\n'), "a pin name is letters, digits", True),
    "not-a-table": (_pins('[pins]\nv1 = 5\n'), "must be a table", True),
    "data-not-strings": (_pins('[pins.v1]\ncommit = "{good}"\n[pins.v1.data]\nx = 5\n'), "[data] must map names", True),
    "extra-table": (_pins('[other]\nx = 1\n'), "only [pins.NAME] tables belong in it", False),
    "non-utf8": (_pins(b'[pins.v1]\nnote = "\xff"\n'), "not UTF-8", False),
    "dev-zero": (_pins("/dev/zero", "link"), "is not a regular file", False),
    "directory": (_pins("", "dir"), "is not a regular file", False),
}
PIN_COMMANDS = {
    "pins": ("pins",),
    "show": ("pin", "show", "v1"),
    "run": ("run", "--good", "@v1", "--bad", "main", "--probe", "{probe}"),
    "restore": ("restore", "v1", "{tmp}/out"),
    "add": ("pin", "v2"),
}


def _pin_cases() -> list[Case]:
    cases = []
    for name, (setup, fragment, removable) in PINS.items():
        for cmd, args in PIN_COMMANDS.items():
            cases.append(Case(f"pins-{name}-{cmd}", args, 2, fragment, setup))
        if removable:
            v1 = "v 1" if name == "bad-name" else "v1"
            cases.append(Case(f"pins-{name}-rm", ("pin", "rm", v1), 0, None, setup, after=_pin_gone))
        else:  # the file itself is unreadable (or holds no pins): `rm` says what
            frag = "no pin named 'v1'" if name == "extra-table" else fragment
            cases.append(Case(f"pins-{name}-rm", ("pin", "rm", "v1"), 2, frag, setup))
    return cases


def _pin_gone(ctx: Ctx, res: CliResult) -> None:
    assert res.stdout.startswith("Removed pin"), res.stdout
    assert bisector(ctx.repo, "pins").returncode == 0


ALL = _journal_cases() + _pin_cases()


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_corrupt_state_is_one_line(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)


def test_resume_refuses_changed_flags_and_a_moved_repository_resumes(tmp_path: Path) -> None:
    """Resume: other flags are refused with the difference; -j is applied and said; the frozen
    probe's absolute path follows the repository folder when it moves."""
    from tests.fixtures.oneline import make_ctx

    ctx = make_ctx(tmp_path)
    script = ctx.repo / "check.sh"  # a probe in the checkout: frozen under .bisector/frozen/
    script.write_bytes(ctx.probe.read_bytes())
    script.chmod(0o755)
    res = bisector(ctx.repo, "run", "--good", ctx.shas[0], "--bad", "main", "--probe", "./check.sh", "--max-steps", "1")
    assert res.returncode == 1, res.stderr
    events = [json.loads(x) for x in next((ctx.repo / ".bisector" / "sessions").glob("*.jsonl")).read_text().splitlines()]
    # --max-steps pauses the session: it stays unfinished, to be resumed.
    assert events[-1]["event"] == "pause"
    changed = bisector(ctx.repo, "run", "--first-parent")
    assert changed.returncode == 2 and "--first-parent True now, False then" in changed.stderr, changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1
    moved = tmp_path / "moved repo"
    ctx.repo.rename(moved)
    script.unlink() if script.exists() else None
    (moved / "check.sh").unlink()  # only the frozen copy is left: the one the session must use
    again = bisector(moved, "run", "-j", "2")
    assert "Resuming with -j 2" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr and again.returncode in (0, 1), again.stderr
    assert "command not found" not in again.stderr
