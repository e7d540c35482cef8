"""Environment per revision: each commit is built and probed with its own dependencies.

`[env] mode` (or `--env`):

- `none` (default): the build and probe run in the environment bisector was started from.
- `uv`: the revision's lock inputs decide its environment. With a `uv.lock`, `uv sync
  --frozen` builds it; without one, `requirements*.txt` (else the `[project]` dependencies of
  `pyproject.toml`) are resolved with `--exclude-newer` set to the date of the last commit
  that changed them, so old code gets the releases of its time.
- `command`: a shell command of yours builds the environment into `$BISECTOR_ENV_DIR`.

An environment is keyed by the hash of its inputs (the files, the Python, the resolution date,
the uv arguments or the command), built once per key into the cache under the state folder
(`bisector.io.envcache.EnvCache`), and restored into the step's workspace (`.venv`) by hard
links. The build and probe then run with `.venv/bin` first on `PATH` and `VIRTUAL_ENV` set.
An environment that cannot be built raises `EnvError`: the step is a skip, never "bad".
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bisector.core.errors import UsageError
from bisector.io.envcache import EnvCache, EnvError
from bisector.io.git import git
from bisector.io.process import capture, run_process

MODES = ("none", "uv", "command")
ENV_DIR = ".venv"  # where a step's environment is restored, inside its workspace
_REQ_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

__all__ = ["ENV_DIR", "MODES", "EnvError", "EnvSettings", "EnvSpec", "describe_cache", "env_changed", "env_spec",
           "prepare_env", "spec_at", "uv_binary", "uv_version"]


@dataclass(frozen=True)
class EnvSettings:
    """The `[env]` table of bisector.toml (frozen into the journal with the build config)."""

    mode: str = "none"
    python: str | None = None  # interpreter or version request; default: the one running bisector
    command: str | None = None  # mode "command": builds the environment into $BISECTOR_ENV_DIR
    inputs: tuple[str, ...] = ()  # mode "command": files that key it (default: the uv inputs)
    uv_args: tuple[str, ...] = ()  # extra arguments to uv (--find-links DIR, --index-url URL, ...)
    timeout: float | None = None  # seconds for one environment build
    uv: str | None = None  # the uv binary (default: beside bisector's Python, else on PATH)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"env mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode == "command" and not (self.command or "").strip():
            raise UsageError('[env] mode = "command" needs a command: command = "python -m venv $BISECTOR_ENV_DIR && ..."')

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @classmethod
    def from_table(cls, table: Mapping[str, Any], cli_mode: str | None = None) -> EnvSettings:
        """From `[env]` with `--env` over `mode`; checks types and that uv can be found."""
        known = {"mode", "python", "command", "inputs", "uv_args", "timeout", "uv"}
        unknown = set(table) - known
        if unknown:
            raise UsageError(f"[env]: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        for name in ("mode", "python", "command", "uv"):
            if name in table and not isinstance(table[name], str):
                raise UsageError(f"[env] {name} must be a string, not {table[name]!r}")
        for name in ("inputs", "uv_args"):
            value = table.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UsageError(f"[env] {name} must be a list of strings, not {value!r}")
        timeout = table.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise UsageError(f"[env] timeout must be a positive number of seconds, not {timeout!r}")
        settings = cls(
            mode=cli_mode or table.get("mode", "none"),
            python=table.get("python"),
            command=table.get("command"),
            inputs=tuple(table.get("inputs", ())),
            uv_args=tuple(table.get("uv_args", ())),
            timeout=float(timeout) if timeout is not None else None,
            uv=table.get("uv"),
        )
        if settings.mode == "uv" and uv_binary(settings) is None:
            raise UsageError("--env uv needs uv: pip install 'bisector[env]' (or put uv on PATH)")
        return settings

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"], d["uv_args"] = list(self.inputs), list(self.uv_args)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> EnvSettings:
        d = dict(d or {})
        d["inputs"] = tuple(d.get("inputs", ()))
        d["uv_args"] = tuple(d.get("uv_args", ()))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def uv_binary(settings: EnvSettings | None = None) -> str | None:
    """The uv to run: `[env] uv`, else the one installed beside this Python (the `env` extra), else PATH."""
    if settings is not None and settings.uv:
        return shutil.which(settings.uv) or (settings.uv if Path(settings.uv).is_file() else None)
    return shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def uv_version(settings: EnvSettings | None = None) -> str | None:
    uv = uv_binary(settings)
    if uv is None:
        return None
    try:
        out = capture([uv, "--version"], cwd=".", timeout=30)
    except OSError:
        return None
    words = out.stdout.split()
    return words[1] if len(words) > 1 and words[0] == "uv" else None


# ------------------------------------------------------------------------- keys
class _Files:
    """The lock inputs of one revision: the files of a workspace, or of a commit (`git show`)."""

    def __init__(self, root: Path, rev: str | None = None):
        self.root, self.rev = root, rev

    def names(self) -> list[str]:
        if self.rev is None:
            return sorted(p.name for p in self.root.iterdir() if p.is_file())
        return sorted(git(self.root, "ls-tree", "--name-only", self.rev).split())

    def read(self, name: str) -> bytes | None:
        if self.rev is None:
            path = self.root / name
            return path.read_bytes() if path.is_file() else None
        if name not in self.names():
            return None
        return git(self.root, "show", f"{self.rev}:{name}").encode()

    def changed_at(self, names: list[str]) -> str:
        """UTC time (RFC 3339) of the last commit that changed `names`: the resolution date."""
        rev = self.rev or "HEAD"
        stamp = git(self.root, "log", "-1", "--format=%ct", rev, "--", *names).strip()
        stamp = stamp or git(self.root, "log", "-1", "--format=%ct", rev).strip()
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(stamp)))


@dataclass(frozen=True)
class EnvSpec:
    """What one revision's environment is made of; `key` names it in the cache."""

    key: str
    mode: str
    kind: str  # uv.lock | requirements | pyproject | command
    inputs: tuple[str, ...]
    python: str  # the interpreter request, as keyed
    exclude_newer: str | None = None  # no lock: releases after this date are not used
    top: tuple[str, ...] = ()  # the top-level requirement names
    requirements: str = ""  # kind pyproject: the [project] dependencies, one a line

    def info(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "mode": self.mode, "kind": self.kind, "inputs": list(self.inputs)}
        if self.exclude_newer:
            d["exclude_newer"] = self.exclude_newer
            d["note"] = f"no lock: resolved with releases up to {self.exclude_newer} (the inputs' last change)"
        return d


def _python_request(settings: EnvSettings) -> tuple[str, str]:
    """(what uv is given, what is keyed): by default bisector's own interpreter and its version."""
    if settings.python:
        return settings.python, settings.python
    return sys.executable, f"{platform.python_implementation()} {platform.python_version()}"


def env_spec(settings: EnvSettings, files: _Files) -> EnvSpec | None:
    """The revision's environment, or None when it has no lock inputs at all."""
    names = files.names()
    _, python_key = _python_request(settings)
    contents: dict[str, bytes] = {}
    top: list[str] = []
    requirements = ""
    exclude_newer = None
    if settings.mode == "command":
        kind = "command"
        wanted = list(settings.inputs) or [n for n in names if _is_uv_input(n)]
        contents = {n: c for n in wanted if (c := files.read(n)) is not None}
        if not contents and settings.inputs:
            return None
    elif "uv.lock" in names:
        kind = "uv.lock"
        contents = {"uv.lock": files.read("uv.lock") or b""}
        top = _lock_top(contents["uv.lock"])
    elif any(_is_requirements(n) for n in names):
        kind = "requirements"
        contents = {n: files.read(n) or b"" for n in names if _is_requirements(n)}
        top = [m.group(1) for c in contents.values() for line in c.decode(errors="replace").splitlines()
               if not line.lstrip().startswith(("#", "-")) and (m := _REQ_NAME.match(line))]
        exclude_newer = files.changed_at(list(contents))
    elif "pyproject.toml" in names:
        kind = "pyproject"
        project = _toml(files.read("pyproject.toml") or b"").get("project", {})
        deps = [str(d) for d in project.get("dependencies", [])]
        requirements = "".join(d + "\n" for d in deps)
        contents = {"pyproject.toml[project.dependencies]": requirements.encode()}
        top = [m.group(1) for d in deps if (m := _REQ_NAME.match(d))]
        exclude_newer = files.changed_at(["pyproject.toml"])
    else:
        return None
    doc = {
        "v": 1, "mode": settings.mode, "kind": kind, "python": python_key, "exclude_newer": exclude_newer,
        "files": {n: hashlib.sha256(c).hexdigest() for n, c in sorted(contents.items())},
        "uv_args": list(settings.uv_args), "command": settings.command if kind == "command" else None,
    }
    key = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]
    return EnvSpec(key, settings.mode, kind, tuple(sorted(contents)), python_key, exclude_newer,
                   tuple(dict.fromkeys(_norm(t) for t in top)), requirements)


def _is_requirements(name: str) -> bool:
    return name.startswith("requirements") and name.endswith(".txt")


def _is_uv_input(name: str) -> bool:
    return name in ("uv.lock", "pyproject.toml") or _is_requirements(name)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _toml(blob: bytes) -> dict[str, Any]:
    try:
        return tomllib.loads(blob.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _lock_top(blob: bytes) -> list[str]:
    """The root project's direct dependencies, from a uv.lock."""
    for pkg in _toml(blob).get("package", []):
        source = pkg.get("source", {})
        if source.get("virtual") == "." or source.get("editable") == ".":
            deps = list(pkg.get("dependencies", []))
            for group in pkg.get("dev-dependencies", {}).values():
                deps += group
            return [d.get("name", "") for d in deps if isinstance(d, dict)]
    return []


# ------------------------------------------------------------------------ build
def _builder(settings: EnvSettings, spec: EnvSpec, cwd: Path, log: Path) -> Callable[[Path], str]:
    """A function that builds the environment of `spec` into a folder, from the files in `cwd`."""
    python, _ = _python_request(settings)
    uv = uv_binary(settings) or "uv"
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}

    def run(cmd: list[str] | str, env: dict[str, str], timeout: float | None) -> None:
        with open(log, "ab") as f:
            f.write(f"$ {cmd if isinstance(cmd, str) else ' '.join(cmd)}\n".encode())
        res = run_process(cmd, cwd=cwd, env=env, timeout=timeout, log_path=log, shell=isinstance(cmd, str))
        if res.timed_out or res.returncode != 0:
            why = f"timed out after {timeout:g} s" if res.timed_out else f"exit {res.returncode}"
            raise EnvError(f"the environment {spec.key[:12]} ({spec.kind}) could not be built ({why})", res.tail(8))

    def build(target: Path) -> str:
        _steps(target)
        return "\n".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else ""

    def _steps(target: Path) -> None:
        deadline = time.monotonic() + settings.timeout if settings.timeout else None

        def left() -> float | None:
            return max(1.0, deadline - time.monotonic()) if deadline else None

        if spec.kind == "command":
            run(settings.command or "", {**base, "BISECTOR_ENV_DIR": str(target), "BISECTOR_PYTHON": python}, left())
            return
        if spec.kind == "uv.lock":
            run([uv, "sync", "--frozen", "--no-install-workspace", "--python", python, *settings.uv_args],
                {**base, "UV_PROJECT_ENVIRONMENT": str(target)}, left())
            return
        run([uv, "venv", "--quiet", "--python", python, str(target)], base, left())
        reqs: list[str] = []
        if spec.kind == "requirements":
            for name in spec.inputs:
                reqs += ["-r", str(cwd / name)]
        else:
            (target / "requirements.in").write_text(spec.requirements)
            reqs = ["-r", str(target / "requirements.in")] if spec.requirements.strip() else []
        if reqs:
            run([uv, "pip", "install", "--python", str(target / "bin" / "python"),
                 "--exclude-newer", spec.exclude_newer or "", *reqs, *settings.uv_args], base, left())

    return build


def prepare_env(workspace: Path, settings: EnvSettings | None, log_dir: Path, *,
                repo: Path | None = None, env_rev: str | None = None,
                cache: EnvCache | None = None, aside: Path | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """Give the checked-out `workspace` its environment: (variables for build and probe, journal info).

    `env_rev`: take the lock inputs of that commit instead of the workspace's (an attribution
    crossing: this code with another revision's environment). Returns ({}, {}) for mode none.
    `aside`: where the previous step's copy was set aside (`envcache.set_aside`), moved back
    when it is of the same key and unchanged. Raises EnvError (a skip) when the environment
    cannot be had.
    """
    if settings is None or not settings.active:
        return {}, {}
    files = _Files(Path(repo or workspace), env_rev) if env_rev else _Files(workspace)
    spec = env_spec(settings, files)
    if spec is None:
        raise EnvError("no environment inputs at this revision (uv.lock, requirements*.txt or pyproject.toml)"
                       + (f" of {env_rev[:10]}" if env_rev else ""), "")
    info = spec.info()
    if env_rev:
        info["from_rev"] = env_rev
    cache = cache or EnvCache.for_repo(Path(repo or workspace))
    log_dir.mkdir(parents=True, exist_ok=True)
    cwd = workspace
    if env_rev and not cache.lookup(spec.key):
        cwd = log_dir / "env-inputs"  # the other revision's inputs, beside this code
        cwd.mkdir(exist_ok=True)
        for name in spec.inputs:
            if "[" not in name:
                (cwd / name).write_bytes(files.read(name) or b"")
    try:
        meta, built = cache.ensure(spec.key, _builder(settings, spec, cwd, log_dir / "env.log"),
                                   describe={**info, "top": list(spec.top)})
    except EnvError as exc:
        exc.info = {**info, "status": "failed", "tail": exc.tail}
        raise
    dest = workspace / ENV_DIR
    t0 = time.monotonic()
    if cache.restore(spec.key, dest, aside):
        info["kept"] = True  # the previous step's copy, unchanged: moved back, not restored again
    packages = meta.get("packages", {})
    top = {n: packages[n] for n in spec.top if n in packages} if spec.top else dict(list(packages.items())[:30])
    info.update(status="ok", built=built, python=meta.get("python", ""), packages=top,
                build_seconds=meta.get("build_seconds", 0.0) if built else 0.0,
                restore_seconds=round(time.monotonic() - t0, 3), tail=meta.get("tail", ""))
    variables = {
        "VIRTUAL_ENV": str(dest),
        "PATH": f"{dest / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "UV_PROJECT_ENVIRONMENT": str(dest),
        "BISECTOR_ENV_KEY": spec.key,
    }
    return variables, info


def spec_at(repo: Path, rev: str, settings: EnvSettings) -> EnvSpec | None:
    """The environment of commit `rev` (its lock inputs, read with git), or None without inputs."""
    return env_spec(settings, _Files(repo, rev)) if settings.active else None


def env_changed(repo: Path, parent: str, commit: str, settings: EnvSettings) -> dict[str, bool]:
    """Did `commit` change its environment (the key) and/or anything else, against `parent`?"""
    before, after = env_spec(settings, _Files(repo, parent)), env_spec(settings, _Files(repo, commit))
    names = [n for n in git(repo, "diff-tree", "-r", "--no-renames", "--name-only", "-z", parent, commit).split("\0") if n]
    inputs = set(settings.inputs) if settings.mode == "command" and settings.inputs else None
    code = any(not (n in inputs if inputs is not None else _is_uv_input(n)) for n in names)
    return {"environment": (before.key if before else None) != (after.key if after else None), "code": code}


def describe_cache(repo: Path, settings: EnvSettings | None = None) -> str:
    """One line for the start of a run: the uv version and the environment cache's size."""
    cache = EnvCache.for_repo(repo)
    entries = cache.entries()
    version = uv_version(settings)
    uv = f"uv {version}" if version else "uv not found"
    return f"Environments: {uv}; cache {len(entries)} environment(s), {sum(e.size for e in entries) / 1e6:.1f} MB in {cache.root}"

