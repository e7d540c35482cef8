"""The command probe: any command with `git bisect run` exit codes, frozen at session start."""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.probes.base import Observation, ProbeContext, probe_env
from bisector.probes.frozen import digest_of, load_frozen, verify_frozen, write_frozen
from bisector.io.process import run_process
from bisector.core.model import Verdict

# Words that a POSIX shell understands without a program on PATH.
_SHELL_WORDS = {
    "test", "[", "true", "false", "exit", "cd", "echo", "printf", "!", "if", "for",
    "while", "case", "{", "(", "set", "export", "exec", ":", ".", "eval", "read",
}
_INTERPRETERS = {"python", "python3", "sh", "bash", "zsh", "node", "perl", "ruby", "Rscript"}
_ON_TIMEOUT = ("skip", "bad", "abort")


# Shell syntax in a command given as words: operators, expansions, redirections.
_SHELL_SYNTAX = re.compile(r"(&&|\|\||[;|&<>`]|\$[A-Za-z_{(0-9?@*#!$-])")


def shell_syntax(command: str) -> str | None:
    """The first shell operator or expansion outside single quotes of `command`, if any."""
    unquoted = re.sub(r"'[^']*'", "''", command)
    m = _SHELL_SYNTAX.search(unquoted)
    return m.group(1) if m else None


def word_spans(command: str, n: int) -> list[tuple[int, int]]:
    """The (start, end) of the first `n` words of `command` as the shell splits them."""
    spans, i = [], 0
    while len(spans) < n:
        while i < len(command) and command[i].isspace():
            i += 1
        if i >= len(command):
            break
        start, quote = i, None
        while i < len(command):
            c = command[i]
            if quote:
                if c == "\\" and quote == '"':
                    i += 1
                elif c == quote:
                    quote = None
            elif c in "'\"":
                quote = c
            elif c == "\\":
                i += 1
            elif c.isspace() or c in ";&|<>()":
                break
            i += 1
        spans.append((start, i))
    return spans


def freeze_command(
    command: str, user_cwd: Path, frozen_dir: Path, known: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str], dict[str, bytes]]:
    """Check the command can run and copy its script out of the user's checkout.

    The script (the first word, or the first argument of an interpreter such as
    `python check.py`) is copied to `frozen_dir` so that old commits are judged by
    today's script, like the script given to `git bisect run`. Returns the command
    with the script replaced by its frozen copy, {copy: sha256} of what was frozen, and
    {copy: bytes} (kept to verify, and restore, the copy before every use: see
    `bisector.probes.frozen`). `known` is the {copy: sha256} recorded when the session
    started: a resumed session's copy must still hold exactly that.
    """
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True  # words as the shell splits them: `./a.sh;` is `./a.sh` and `;`
        words = list(lexer)
    except ValueError as exc:
        raise UsageError(f"cannot parse the probe command {command!r}: {exc}") from None
    if not words:
        raise UsageError("the probe command is empty: give one with --probe 'CMD'")
    script_index = 0
    first = words[0]
    if first in _SHELL_WORDS or "=" in first:
        return command, {}, {}
    if "/" in first:
        path = (user_cwd / first).resolve()
        if not path.exists():
            raise UsageError(f"probe command not found: {first} (no such file in {user_cwd})")
        if not path.is_file():
            raise UsageError(f"probe command is not a file: {first} (give a script or a program on PATH)")
        if not os.access(path, os.X_OK):
            raise UsageError(f"probe command is not executable: {first} (run: chmod +x {first})")
    elif shutil.which(first) is None:
        raise UsageError(f"probe command not found: {first} (not on PATH)")
    if os.path.basename(first).rstrip("0123456789.") in _INTERPRETERS and len(words) > 1:
        script_index = 1
        if words[1].startswith("-"):
            return command, {}, {}
    named = Path(os.path.abspath(user_cwd / words[script_index]))
    if os.path.realpath(named.parent) == os.path.realpath(frozen_dir):
        # A copy in the frozen folder (a resumed session): never trusted by its name.
        expected = (known or {}).get(str(named))
        data = load_frozen(named, expected)
        digest = expected or digest_of(data)
        return command, {str(named): digest}, {str(named): data}
    candidate = named.resolve()
    if script_index == 1 and not candidate.is_file():
        raise UsageError(f"probe script not found: {words[1]} (no such file in {user_cwd})")
    if not candidate.is_file():
        return command, {}, {}  # a program on PATH: nothing to freeze
    data = candidate.read_bytes()
    target = write_frozen(frozen_dir, candidate.name, data)
    # Only the script's word is replaced: the rest of the command stays exactly as given
    # (re-joining the words would quote `&&`, `;` or `$VAR` and change what the shell runs).
    spans = word_spans(command, script_index + 1)
    start, end = spans[script_index]
    if start == end or shlex.split(command[start:end]) != [words[script_index]]:
        raise UsageError(f"cannot tell the probe script apart in {command!r}: put the command in a script")
    copy = str(target)
    return command[:start] + shlex.quote(copy) + command[end:], {copy: digest_of(data)}, {copy: data}


def place_of(command: str, user_cwd: Path) -> list[list[str]]:
    """[[frozen path, path in the repository]] of the command's script, when it lives in the
    user's repository: each step copies the frozen script there, so that its imports and
    relative paths resolve as in the user's checkout (`python check.py` importing the project)."""
    root = next((d for d in (user_cwd.resolve(), *user_cwd.resolve().parents) if (d / ".git").exists()), None)
    words = shlex.split(command)
    if root is None or not words:
        return []
    index = 1 if os.path.basename(words[0]).rstrip("0123456789.") in _INTERPRETERS and len(words) > 1 else 0
    candidate = (user_cwd / words[index]).resolve()
    if not candidate.is_file() or not candidate.is_relative_to(root) or (root / ".bisector") in candidate.parents:
        return []
    return [[str(candidate), str(candidate.relative_to(root))]]


class CommandProbe:
    """Runs a shell command in the workspace; its exit code is the verdict."""

    def __init__(
        self,
        command: str,
        *,
        timeout: float | None = None,
        on_timeout: str = "skip",
        name: str = "command",
        frozen: Mapping[str, str] | None = None,
        repeatable: bool = True,
        frozen_data: Mapping[str, bytes] | None = None,
        shell: bool = False,
        place: list[list[str]] | None = None,
        probe_from: str = "frozen",
    ):
        if on_timeout not in _ON_TIMEOUT:
            raise UsageError(f"probe on_timeout must be one of {', '.join(_ON_TIMEOUT)}, not {on_timeout!r}")
        self.command = command
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.name = name
        self.frozen = dict(frozen or {})
        self._frozen_data = dict(frozen_data or {})  # what each copy must hold, to restore it
        # A command may be flaky (a test, a sampled evaluation): by default a re-run is a new
        # sample; `repeatable = false` declares it deterministic given the build.
        self.repeatable = repeatable
        self.shell = shell  # given as a shell string (--probe-shell, `shell = true`)
        self.place = [list(p) for p in place or []]  # [[frozen script, its path in the worktree]]
        self.probe_from = probe_from  # "commit": the command runs each commit's own script, unfrozen

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path) -> "CommandProbe":
        """Build from a config table: {run = "CMD", timeout = 60, on_timeout = "skip"}."""
        command = spec.get("run") or spec.get("command")
        if not command or not isinstance(command, str):
            raise UsageError("a command probe needs `run = \"CMD\"` (or --probe 'CMD')")
        timeout = spec.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout <= 0):
            raise UsageError(f"probe timeout must be a number of seconds > 0, not {timeout!r}")
        for key in ("repeatable", "shell"):
            if not isinstance(spec.get(key, False), bool):
                raise UsageError(f"probe `{key}` must be true or false, not {spec[key]!r}")
        shell = bool(spec.get("shell", False))
        if shell:  # a shell string: run by /bin/sh exactly as given, nothing rewritten
            if not command.strip():
                raise UsageError("the probe command is empty: give one with --probe-shell 'CMD'")
            frozen_command, frozen, frozen_data = command, {}, {}
            place: list[list[str]] = []
        elif spec.get("probe_from") == "commit":  # each commit's own script, as `git bisect run`
            try:
                shlex.split(command)
            except ValueError as exc:
                raise UsageError(f"cannot parse the probe command {command!r}: {exc}") from None
            return cls(command, timeout=float(timeout) if timeout else None, on_timeout=spec.get("on_timeout", "skip"),
                       name=spec.get("name", "command"), repeatable=bool(spec.get("repeatable", True)),
                       probe_from="commit")
        else:
            known = spec.get("frozen") if isinstance(spec.get("frozen"), Mapping) else None
            frozen_command, frozen, frozen_data = freeze_command(command, user_cwd, frozen_dir, known)
            place = place_of(command, user_cwd)  # after freeze_command: it parses the command first
            if place and frozen:
                place = [[next(iter(frozen)), place[0][1]]]
            place = place if frozen and place else list(spec.get("place") or [])
        return cls(
            frozen_command,
            timeout=float(timeout) if timeout else None,
            on_timeout=spec.get("on_timeout", "skip"),
            name=spec.get("name", "command"),
            frozen=frozen,
            repeatable=bool(spec.get("repeatable", True)),
            frozen_data=frozen_data,
            shell=shell,
            place=place,
        )

    def _verify_frozen(self) -> list[str]:
        """Check every frozen copy against its digest; the ones rewritten from the frozen bytes."""
        return [p for p, d in self.frozen.items() if verify_frozen(Path(p), d, self._frozen_data.get(p))]

    def config(self) -> dict[str, Any]:
        return {
            "type": "command",
            "run": self.command,
            "timeout": self.timeout,
            "on_timeout": self.on_timeout,
            "frozen": self.frozen,
            "repeatable": self.repeatable,
            **({"shell": True} if self.shell else {}),  # only when set: older journals compare equal
            # Only when set: the configs of sessions from before these existed compare equal.
            **({"place": self.place} if self.place else {}),
            **({"probe_from": self.probe_from} if self.probe_from != "frozen" else {}),
        }

    def run(self, ctx: ProbeContext) -> Observation:
        env = probe_env(ctx)
        timeout = self.timeout if self.timeout is not None else ctx.timeout
        log = ctx.log_dir / f"probe-{self.name}.log"
        restored = self._verify_frozen()  # never run a frozen copy that is not what was frozen
        command = self.command
        for frozen, rel in self.place:
            target = Path(ctx.workspace) / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copy2(frozen, target)
            command = command.replace(frozen, shlex.quote("./" + rel))
        start = time.monotonic()
        res = run_process(
            ["/bin/sh", "-c", command], cwd=ctx.workspace, env=env, timeout=timeout, log_path=log
        )
        duration = time.monotonic() - start
        evidence: dict[str, Any] = {"exit_code": res.returncode, "timed_out": res.timed_out}
        rewritten = self._verify_frozen()  # a probe that rewrote its own copy: restored at once
        if restored or rewritten:
            evidence["frozen_restored"] = sorted(set(restored + rewritten))
        if res.timed_out:
            verdict = Verdict(self.on_timeout)
            summary = f"timed out after {timeout:g}s"
        else:
            verdict = Verdict.from_exit_code(res.returncode)
            if res.returncode < 0:
                summary = f"killed by signal {-res.returncode}"
            else:
                summary = f"exit {res.returncode}"
            last = res.tail(1).strip()
            if last:
                summary += f": {last[:60]}"
        if verdict is not Verdict.GOOD:
            evidence["log_tail"] = res.tail(10)
        return Observation(
            probe=self.name,
            verdict=verdict,
            summary=summary,
            evidence=evidence,
            duration=duration,
            log=str(log),
        )
