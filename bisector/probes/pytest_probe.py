"""The `pytest` probe: today's test files judge every commit.

`--probe "pytest tests/test_model.py"` as a plain command runs each old commit's own version of the
test file, and pytest's exit 4/5 (usage error, nothing collected) would count as "bad". This probe
reads the named test files (or every test file and conftest.py under a named folder) from your
checkout once, at session start, freezes them under `.bisector/frozen/`, and copies them into each
step's workspace at the same place before it runs `python -m pytest` on exactly those files.

Exit codes: 0 good, 1 bad (a test failed), 2-5 skip with the reason (interrupted or a collection
error, internal error, usage error, no tests collected); a timeout is `on_timeout` (skip).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.core.model import Verdict
from bisector.io.git import repo_root
from bisector.io.process import run_process
from bisector.probes import adapter
from bisector.probes.base import Observation, ProbeContext, probe_env

DESCRIPTION = "today's pytest files (frozen) on every commit; 0 good, 1 bad, 2-5 (collection/usage errors) skip"
KEYS = ("tests", "k", "markers", "args", "python", "timeout", "on_timeout", "repeatable")
SKIP_REASONS = {
    2: "pytest was interrupted (a collection error?)",
    3: "pytest internal error",
    4: "pytest usage error",
    5: "no tests collected",
}
_TEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")
_COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")


def _files_under(root: Path, folder: Path) -> list[Path]:
    """Test modules and conftest.py files under a folder (what pytest would collect), sorted."""
    found = [p for p in folder.rglob("*.py") if _TEST_FILE.match(p.name) or p.name == "conftest.py"]
    return sorted(p for p in found if ".bisector" not in p.relative_to(root).parts)


def freeze_tests(tests: list[str], user_cwd: Path, frozen_dir: Path) -> dict[str, str]:
    """{path relative to the repository: sha256} of the named files (folders expanded), each
    copied to `frozen_dir` as `<sha[:12]>-<name>`."""
    root = repo_root(user_cwd)
    files: list[Path] = []
    for name in tests:
        path = (user_cwd / name).resolve()
        if not path.exists():
            raise UsageError(f"pytest probe: test path not found: {name} (no such file or folder in {user_cwd})")
        try:
            path.relative_to(root)
        except ValueError:
            raise UsageError(f"pytest probe: {name} is outside the repository {root}: name a test file inside it") from None
        files += _files_under(root, path) if path.is_dir() else [path]
    if not any(p.name != "conftest.py" for p in files):
        raise UsageError(f"pytest probe: no test files in {', '.join(tests)} (test_*.py or *_test.py)")
    frozen: dict[str, str] = {}
    frozen_dir.mkdir(parents=True, exist_ok=True)
    for p in files:
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        target = frozen_dir / f"{digest[:12]}-{p.name}"
        if not target.exists():
            shutil.copy2(p, target)
        frozen[p.relative_to(root).as_posix()] = digest
    return frozen


class PytestProbe:
    """`python -m pytest` on today's test files, in each step's workspace."""

    cost = 10

    def __init__(self, spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path):
        adapter.check_keys(spec, KEYS, "pytest")
        tests = spec.get("tests")
        if isinstance(tests, str):
            tests = [tests]
        if not tests or not isinstance(tests, list) or not all(isinstance(t, str) and t for t in tests):
            raise UsageError('a pytest probe needs `tests = ["tests/test_model.py", ...]` (files or folders)')
        for key in ("k", "markers", "python"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise UsageError(f"pytest probe: `{key}` must be a string, not {spec[key]!r}")
        args = spec.get("args", [])
        if isinstance(args, str):
            args = shlex.split(args)
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise UsageError("pytest probe: `args` must be a list of strings (extra pytest arguments)")
        self.on_timeout = spec.get("on_timeout", "skip")
        if self.on_timeout not in ("skip", "bad", "abort"):
            raise UsageError(f"pytest probe: `on_timeout` must be skip, bad or abort, not {self.on_timeout!r}")
        self.name = spec.get("name", "pytest")
        self.tests = list(tests)
        self.k = spec.get("k")
        self.markers = spec.get("markers")
        self.args = list(args)
        self.python = spec.get("python")
        timeout = spec.get("timeout")
        self.timeout = float(timeout) if timeout else None
        self.repeatable = bool(spec.get("repeatable", True))
        self.frozen_dir = frozen_dir
        self.frozen = freeze_tests(self.tests, user_cwd, frozen_dir)
        if self.python is None:
            _check_pytest(sys.executable)

    def config(self) -> dict[str, Any]:
        return {"type": "pytest", "tests": self.tests, "frozen": self.frozen, "k": self.k, "markers": self.markers,
                "args": self.args, "python": self.python, "timeout": self.timeout, "on_timeout": self.on_timeout,
                "repeatable": self.repeatable}

    def command(self, env: Mapping[str, str]) -> list[str]:
        test_files = [rel for rel in self.frozen if Path(rel).name != "conftest.py"]
        cmd = [_python(self.python, env), "-m", "pytest", "-p", "no:cacheprovider", "-q", *test_files]
        if self.k:
            cmd += ["-k", self.k]
        if self.markers:
            cmd += ["-m", self.markers]
        return cmd + self.args

    def place(self, workspace: Path) -> None:
        """Today's test files over the commit's own, at the same paths."""
        for rel, digest in self.frozen.items():
            target = workspace / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.is_file():
                target.unlink()
            shutil.copyfile(self.frozen_dir / f"{digest[:12]}-{Path(rel).name}", target)

    def run(self, ctx: ProbeContext) -> Observation:
        env = probe_env(ctx)
        self.place(ctx.workspace)
        timeout = self.timeout if self.timeout is not None else ctx.timeout
        log = ctx.log_dir / f"probe-{self.name}.log"
        start = time.monotonic()
        res = run_process(self.command(env), cwd=ctx.workspace, env=env, timeout=timeout, log_path=log)
        duration = time.monotonic() - start
        tail = res.tail(15)
        evidence: dict[str, Any] = {"exit_code": res.returncode, "timed_out": res.timed_out}
        counts = {word.rstrip("s") if word.startswith("error") else word: int(n)
                  for n, word in _COUNTS.findall(res.tail(1))}
        evidence.update(counts)
        if res.timed_out:
            verdict, summary = Verdict(self.on_timeout), f"timed out after {timeout:g}s"
        elif res.returncode == 0:
            verdict, summary = Verdict.GOOD, "tests passed"
        elif res.returncode == 1 and "No module named pytest" in tail:
            verdict, summary = Verdict.SKIP, "pytest is not installed in this step's Python"
        elif res.returncode == 1:
            verdict, summary = Verdict.BAD, "tests failed"
        elif res.returncode in SKIP_REASONS:
            verdict, summary = Verdict.SKIP, SKIP_REASONS[res.returncode]
            evidence["reason"] = summary
        else:
            verdict = Verdict.SKIP
            summary = f"killed by signal {-res.returncode}" if res.returncode < 0 else f"pytest exit {res.returncode}"
            evidence["reason"] = summary
        last = res.tail(1).strip().strip("=").strip()
        if last and not res.timed_out:
            summary += f": {last[:80]}"
        if verdict is not Verdict.GOOD:
            evidence["log_tail"] = tail
        return Observation(probe=self.name, verdict=verdict, summary=summary, evidence=evidence,
                           duration=duration, log=str(log))


def _python(python: str | None, env: Mapping[str, str]) -> str:
    """The interpreter: the `python` key, else the step environment's venv, else bisector's own."""
    if python:
        found = shutil.which(python, path=env.get("PATH")) if "/" not in python else python
        return found or python
    venv = env.get("VIRTUAL_ENV")
    if venv and (Path(venv) / "bin" / "python").exists():
        return str(Path(venv) / "bin" / "python")
    return sys.executable


def _check_pytest(python: str) -> None:
    try:
        ok = subprocess.run([python, "-c", "import pytest"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        raise UsageError(f"pytest probe: pytest cannot be imported by {python}: pip install pytest "
                         "(or set `python` to your project's interpreter)")
