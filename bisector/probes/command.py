"""The command probe: any command with `git bisect run` exit codes, frozen at session start."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.probes.base import Observation, ProbeContext, probe_env
from bisector.io.process import run_process
from bisector.core.model import Verdict

# Words that a POSIX shell understands without a program on PATH.
_SHELL_WORDS = {
    "test", "[", "true", "false", "exit", "cd", "echo", "printf", "!", "if", "for",
    "while", "case", "{", "(", "set", "export", "exec", ":", ".", "eval", "read",
}
_INTERPRETERS = {"python", "python3", "sh", "bash", "zsh", "node", "perl", "ruby", "Rscript"}
_ON_TIMEOUT = ("skip", "bad", "abort")


def freeze_command(command: str, user_cwd: Path, frozen_dir: Path) -> tuple[str, dict[str, str]]:
    """Check the command can run and copy its script out of the user's checkout.

    The script (the first word, or the first argument of an interpreter such as
    `python check.py`) is copied to `frozen_dir` so that old commits are judged by
    today's script, like the script given to `git bisect run`. Returns the command
    with the script replaced by its frozen copy, and {original: sha256} of what was frozen.
    """
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"cannot parse the probe command {command!r}: {exc}") from None
    if not words:
        raise UsageError("the probe command is empty: give one with --probe 'CMD'")
    script_index = 0
    first = words[0]
    if first in _SHELL_WORDS or "=" in first:
        return command, {}
    if "/" in first:
        path = (user_cwd / first).resolve()
        if not path.exists():
            raise UsageError(f"probe command not found: {first} (no such file in {user_cwd})")
        if not os.access(path, os.X_OK):
            raise UsageError(f"probe command is not executable: {first} (run: chmod +x {first})")
    elif shutil.which(first) is None:
        raise UsageError(f"probe command not found: {first} (not on PATH)")
    if os.path.basename(first).rstrip("0123456789.") in _INTERPRETERS and len(words) > 1:
        script_index = 1
        if words[1].startswith("-"):
            return command, {}
    candidate = (user_cwd / words[script_index]).resolve()
    if script_index == 1 and not candidate.is_file():
        raise UsageError(f"probe script not found: {words[1]} (no such file in {user_cwd})")
    if not candidate.is_file():
        return command, {}  # a program on PATH: nothing to freeze
    data = candidate.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if candidate.parent == frozen_dir.resolve():
        return command, {str(candidate): digest}  # already frozen (a resumed session)
    frozen_dir.mkdir(parents=True, exist_ok=True)
    target = frozen_dir / f"{digest[:12]}-{candidate.name}"
    if not target.exists():
        shutil.copy2(candidate, target)
    words[script_index] = str(target)
    return shlex.join(words), {words[script_index]: digest}


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
        # A command may be flaky (a test, a sampled evaluation): by default a re-run is a new
        # sample; `repeatable = false` declares it deterministic given the build.
        self.repeatable = repeatable
        self.place = [list(p) for p in place or []]  # [[frozen script, its path in the worktree]]
        self.probe_from = probe_from  # "commit": the command runs each commit's own script, unfrozen

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path) -> "CommandProbe":
        """Build from a config table: {run = "CMD", timeout = 60, on_timeout = "skip"}."""
        command = spec.get("run") or spec.get("command")
        if not command or not isinstance(command, str):
            raise UsageError("a command probe needs `run = \"CMD\"` (or --probe 'CMD')")
        timeout = spec.get("timeout")
        if spec.get("probe_from") == "commit":
            try:
                shlex.split(command)
            except ValueError as exc:
                raise UsageError(f"cannot parse the probe command {command!r}: {exc}") from None
            return cls(command, timeout=float(timeout) if timeout else None, on_timeout=spec.get("on_timeout", "skip"),
                       name=spec.get("name", "command"), repeatable=bool(spec.get("repeatable", True)),
                       probe_from="commit")
        place = place_of(command, user_cwd)
        frozen_command, frozen = freeze_command(command, user_cwd, frozen_dir)
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
            place=place,
        )

    def config(self) -> dict[str, Any]:
        return {
            "type": "command",
            "run": self.command,
            "timeout": self.timeout,
            "on_timeout": self.on_timeout,
            "frozen": self.frozen,
            "repeatable": self.repeatable,
            # Only when set: the configs of sessions from before these existed compare equal.
            **({"place": self.place} if self.place else {}),
            **({"probe_from": self.probe_from} if self.probe_from != "frozen" else {}),
        }

    def run(self, ctx: ProbeContext) -> Observation:
        env = probe_env(ctx)
        timeout = self.timeout if self.timeout is not None else ctx.timeout
        log = ctx.log_dir / f"probe-{self.name}.log"
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
