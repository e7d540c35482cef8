"""Resuming and bounding a run's flags: -j within its limit, the flags given on resume against
the session's frozen ones, and the frozen paths of a repository folder that was moved."""

from __future__ import annotations

import json
import os
import platform
import shlex
from pathlib import Path
from typing import Any, Mapping

from bisector import __version__
from bisector.core.errors import UsageError
from bisector.io.config import table
from bisector.io.git import git, resolve
from bisector.journal.writer import JOURNAL_DIR
from bisector.probes.command import word_spans, freeze_command, shell_syntax


def check_jobs(opts: Any, file_config: Mapping[str, Any]) -> None:
    """-j at most `[executor] max_jobs`, else (local steps) twice the CPU count but at least 8."""
    configured = table(dict(file_config), "executor").get("max_jobs")
    remote = (opts.executor or table(dict(file_config), "executor").get("kind") or "local") != "local"
    limit = configured or (256 if remote else max(8, 2 * (os.cpu_count() or 1)))
    if opts.jobs > limit:
        why = "[executor] max_jobs" if configured else f"{os.cpu_count()} CPUs here"
        raise UsageError(f"-j {opts.jobs} is more than {limit} parallel steps ({why}): pass a smaller -j, "
                         "or raise the limit with `max_jobs` in the [executor] table of bisector.toml")


def relocated(repo: Path, start: Mapping[str, Any]) -> dict[str, Any]:
    """The start event with the frozen probes' paths moved to this repository's `.bisector/frozen/`
    (the journal freezes absolute paths: a repository folder that was moved still resumes)."""
    here = repo / JOURNAL_DIR / "frozen"
    marker = f"/{JOURNAL_DIR}/frozen/"

    def move(path: str) -> str:
        old, sep, name = path.rpartition(marker)
        if not sep or Path(old + marker).is_dir() or not (here / name).is_file():
            return path
        return str(here / name)

    def move_command(command: str) -> str:
        out, end = [], 0
        for s, e in word_spans(command, 2):
            try:
                word = shlex.split(command[s:e])
            except ValueError:
                continue
            if len(word) == 1 and move(word[0]) != word[0]:
                out += [command[end:s], shlex.quote(move(word[0]))]
                end = e
        return "".join(out) + command[end:]

    start = json.loads(json.dumps(start))
    config = start.get("config") if isinstance(start.get("config"), dict) else {}
    probes = config.get("probes", {}).get("probes", []) if isinstance(config.get("probes"), dict) else []
    for spec in [*(config.get("probe_specs") or []), *probes]:
        if isinstance(spec, dict) and isinstance(spec.get("run"), str):
            spec["run"] = move_command(spec["run"])
        if isinstance(spec, dict) and isinstance(spec.get("frozen"), dict):
            spec["frozen"] = {move(k): v for k, v in spec["frozen"].items()}
    return start


def changed_flags(repo: Path, opts: Any, start: Mapping[str, Any]) -> list[str]:
    """The plan flags given now that differ from the session's frozen ones, in words."""
    config, search = start.get("config") or {}, start.get("search") or {}
    build = config.get("build") or {}
    specs = config.get("probe_specs") or [{}]
    out: list[str] = []

    def differs(flag: str, now: Any, then: Any) -> None:
        if now != then:
            out.append(f"{flag} {now!r} now, {then!r} then")

    if opts.probe is not None:
        then = specs[0].get("run") if len(specs) == 1 else None
        now = opts.probe
        if now != then and then is not None and opts.probe != "manual":
            try:
                now = freeze_command(opts.probe, Path(os.getcwd()), repo / JOURNAL_DIR / "frozen")[0]
            except UsageError:
                pass
        differs("--probe", now if now == then else opts.probe, then)
    if opts.probe_timeout is not None:
        differs("--timeout", opts.probe_timeout, specs[0].get("timeout"))
    for flag, now, key in (("--build", opts.build, "command"), ("--build-timeout", opts.build_timeout, "timeout"),
                           ("--on-failure", opts.on_failure, "on_failure")):
        if now is not None:
            differs(flag, now, build.get(key))
    if opts.no_cache:
        differs("--no-cache", True, not build.get("cache", True))
    if opts.first_parent:
        differs("--first-parent", True, bool(start.get("first_parent")))
    if opts.paths:
        differs("pathspec", list(opts.paths), list(start.get("paths") or []))
    for flag, key in (("--noise", "noise"), ("--flaky", "flaky"), ("--learn-noise", "learn_noise"),
                      ("--confidence", "confidence")):  # --max-steps: how many more steps this run takes
        if getattr(opts, key) is not None:
            differs(flag, getattr(opts, key), search.get(key))
    if opts.axis != "code":
        differs("--axis", opts.axis, start.get("axis") or "code")
    if opts.attribute:
        differs("--attribute", True, bool(start.get("attribute")))
    if opts.reuse_from:
        differs("--from", opts.reuse_from, start.get("reuse_from"))
    for flag, rev, key in (("--code-rev", opts.code_rev, "code_rev"), ("--data-rev", opts.data_rev, "data_rev")):
        if rev:
            differs(flag, resolve(repo, rev, flag[2:].replace("-", " ")), start.get(key))
    if opts.env is not None:
        differs("--env", opts.env, (build.get("env") or {}).get("mode", "none"))
    if opts.untracked:
        differs("--with-untracked", [str(p).strip("/") for p in opts.untracked], list(start.get("untracked") or []))
    return out


def shell_notes(specs: list[dict[str, Any]]) -> list[str]:
    """A warning for each command probe given as words that holds shell syntax: it runs with
    /bin/sh as written (never rewritten), but only its first script is frozen."""
    out = []
    for spec in specs:
        command = spec.get("run") or spec.get("command")
        if spec.get("type", "command") != "command" or spec.get("shell") or not isinstance(command, str):
            continue
        found = shell_syntax(command)
        if found:
            out.append(f"Warning: the probe {command!r} holds shell syntax ({found}): /bin/sh runs it as written "
                       "and only its first script is frozen; pass it with --probe-shell (or `shell = true`) "
                       "to say so, or put the commands in one script")
    return out


# The flags given on the command line, as the `start` event keeps them: (field, flag, default).
_FLAGS = (
    ("probe", "--probe", None), ("probe_timeout", "--timeout", None), ("build", "--build", None),
    ("build_timeout", "--build-timeout", None), ("on_failure", "--on-failure", None),
    ("first_parent", "--first-parent", False), ("paths", "PATHSPEC", []), ("noise", "--noise", None),
    ("flaky", "--flaky", None), ("learn_noise", "--learn-noise", None), ("confidence", "--confidence", None),
    ("max_steps", "--max-steps", None), ("axis", "--axis", "code"), ("code_rev", "--code-rev", None),
    ("data_rev", "--data-rev", None), ("attribute", "--attribute", False), ("no_cache", "--no-cache", False),
    ("env", "--env", None), ("reuse_from", "--from", None), ("untracked", "--with-untracked", []),
)


def given_flags(opts: Any) -> dict[str, Any]:
    """The flags given on the command line (not their defaults), as the `start` event keeps them."""
    out = {}
    for name, _flag, default in _FLAGS:
        value = getattr(opts, name)
        if value != default and value is not None:
            out[name] = list(value) if isinstance(value, (list, tuple)) else value
    return out


def environment() -> dict[str, str]:
    return {
        "bisector": __version__,
        "python": platform.python_version(),
        "platform": platform_name(),
        "git": git(Path("."), "--version").strip().removeprefix("git version "),
    }


def platform_name() -> str:
    """`platform.platform()` without its `uname -p` subprocess (the processor field, which it
    drops when it says "unknown" or repeats the machine, as it does on Linux)."""
    u = platform.uname()
    if u.system != "Linux":
        return platform.platform()
    libc = "".join(platform.libc_ver())
    return "-".join(x for x in (u.system, u.release, u.machine, "with", libc) if x) if libc else f"{u.system}-{u.release}-{u.machine}"


def pinned_bounds(pinned: Mapping[str, Mapping[str, str]], goods: Any, digest: str,
                  data_rev: str | None) -> dict[str, dict[str, Any]]:
    """For each good bound given as a pin: whether it is probed, and why (the start event's
    `pinned_bounds`). A pin whose record holds a verified good result of this same probe suite
    and build (`digest`: `plan.judge_digest`) and the same data is not probed, even under `bounds = "check"`."""
    out: dict[str, dict[str, Any]] = {}
    for sha in goods:
        pin = pinned.get(sha)
        if pin is None:
            continue
        name, when = pin.get("name", "?"), pin.get("created") or "an unknown date"
        same = bool(pin.get("probe_digest")) and pin.get("probe_digest") == digest
        if pin.get("verdict") == "good" and same and (pin.get("data_rev") or None) == data_rev:
            out[sha] = {"probed": False, "why": f"pin {name} verified good at {when} with the same probe and build"}
        elif pin.get("verdict") != "good":
            out[sha] = {"probed": True, "why": f"pin {name} holds no verified good result"}
        else:
            other = "another probe or build" if not same else "other data"
            out[sha] = {"probed": True, "why": f"pin {name} was verified good at {when} with {other}"}
    return out
