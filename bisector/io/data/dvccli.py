"""The user's `dvc` CLI and configuration: where the executable is, how to call it, what it is set to.

Mutating steps (checkout, fetch, repro) go through the user's `dvc` executable, so the user's DVC
version and remote plugins are used and DVC's state stays out of this process. The user's
configuration is read in-process with `dvc.config` (read-only, imported lazily).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from bisector.core.errors import UsageError
from bisector.io.process import Captured, capture

LINK_TYPES = ("reflink", "hardlink", "symlink", "copy")
DEFAULT_LINK_TYPE = "reflink,copy"

# Remote URL scheme -> the name `dvc version` lists under "Supports:" and the pip extra.
_PLUGIN_SCHEMES = {
    "s3": "s3", "gs": "gs", "gcs": "gs", "azure": "azure", "gdrive": "gdrive", "ssh": "ssh",
    "hdfs": "hdfs", "webhdfs": "webhdfs", "http": "http", "https": "https", "webdav": "webdav",
    "webdavs": "webdavs", "oss": "oss",
}


def dvc_executable() -> str:
    """The `dvc` next to this Python first (same environment), then the one on PATH."""
    here = Path(sys.executable).parent / "dvc"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("dvc")
    if found:
        return found
    raise UsageError(
        "this is a DVC repository but no `dvc` executable was found next to Python or on PATH: "
        "install DVC in this environment (pip install dvc)"
    )


def dvc_env(site_cache_dir: Path | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a `dvc` subprocess (and for a build that runs `dvc repro`).

    No analytics or updater traffic, DVC's site cache (state, index and lock databases) kept
    in the session folder, and the user's PATH as it was: a build spelled `dvc repro` runs the
    user's own `dvc` (and `python`). Only when the user has no `dvc` on PATH is the folder of
    bisector's own added, at the end (see `own_dvc_fallback`).
    """
    env = dict(os.environ if base is None else base)
    env["DVC_NO_ANALYTICS"] = "1"
    env["DVC_IGNORE_ISATTY"] = "1"
    if site_cache_dir is not None:
        env["DVC_SITE_CACHE_DIR"] = str(site_cache_dir)
    fallback = own_dvc_fallback(env.get("PATH", ""))
    if fallback:
        env["PATH"] = env.get("PATH", "") + os.pathsep + str(Path(fallback).parent)
    return env


def own_dvc_fallback(path: str) -> str | None:
    """bisector's own `dvc` when `path` (the user's PATH) has none, else None: the user's tools first."""
    if shutil.which("dvc", path=path):
        return None
    try:
        return dvc_executable()
    except UsageError:
        return None


def run_dvc(cwd: Path, *args: str, env: Mapping[str, str], timeout: float | None = None) -> Captured:
    """Run `dvc args...` in `cwd`; a timeout reads as exit code 124 with a note in stderr."""
    import subprocess

    try:
        return capture([dvc_executable(), *args], cwd=cwd, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Captured(124, "", f"dvc {args[0]} timed out after {timeout} s")


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def failed_targets(output: str) -> set[str]:
    """The targets of DVC's 'Checkout failed for following targets:' block."""
    lines = strip_ansi(output).splitlines()
    found: set[str] = set()
    for n, line in enumerate(lines):
        if "Checkout failed for following targets" in line:
            for t in lines[n + 1:]:
                if not t.strip() or t.startswith(("Is your cache", "ERROR", "WARNING", "<")):
                    break
                found.add(t.strip())
    return found


def parse_link_type(link_type: str | Sequence[str]) -> tuple[str, ...]:
    """`"reflink,copy"` or `["hardlink", "copy"]` -> validated tuple, or a UsageError."""
    parts = link_type.split(",") if isinstance(link_type, str) else list(link_type)
    types = tuple(p.strip() for p in parts if p.strip())
    bad = [t for t in types if t not in LINK_TYPES]
    if not types or bad:
        raise UsageError(
            f"invalid DVC link type {link_type!r}: use a comma-separated list of {', '.join(LINK_TYPES)} "
            f"(default {DEFAULT_LINK_TYPE})"
        )
    return types


@dataclass
class UserDvcConfig:
    """What a worktree needs from the user's DVC configuration, with paths made absolute."""

    cache_dir: Path
    remotes: dict[str, dict[str, str]] = field(default_factory=dict)
    default_remote: str | None = None
    cache_options: dict[str, str] = field(default_factory=dict)  # cache.* but dir and type (e.g. shared)

    def remote_url(self, name: str | None = None) -> str | None:
        r = self.remotes.get(name or self.default_remote or "")
        return r.get("url") if r else None


def read_user_config(repo: Path) -> UserDvcConfig:
    """The user's effective DVC configuration (system, global, repo, local merged) for `repo`.

    Relative paths (cache.dir, local remote URLs, credential files) are resolved against the
    config file that set them, as DVC does, so they stay right from a worktree elsewhere.
    """
    from dvc.config import Config  # lazy: DVC's import costs ~0.2 s

    dvc_dir = (repo / ".dvc").resolve()
    try:
        conf = Config(dvc_dir=str(dvc_dir), validate=False).read()
    except Exception as exc:  # ConfigError and configobj parse errors
        raise UsageError(f"cannot read the DVC configuration of {repo}: {strip_ansi(str(exc))}") from None
    cache = conf.get("cache", {}).get("dir")
    cache_dir = Path(str(cache)) if cache else dvc_dir / "cache"
    remotes = {
        name: {k: str(v) for k, v in opts.items()}
        for name, opts in conf.get("remote", {}).items()
        if isinstance(opts, Mapping)
    }
    default = conf.get("core", {}).get("remote")
    options = {k: str(v) for k, v in conf.get("cache", {}).items() if k not in ("dir", "type") and not isinstance(v, Mapping)}
    return UserDvcConfig(
        cache_dir=cache_dir.resolve(),
        remotes=remotes,
        default_remote=str(default) if default else None,
        cache_options=options,
    )


def write_config_local(path: Path, user: UserDvcConfig, link_types: Sequence[str], site_cache_dir: Path) -> None:
    """Write `<wt>/.dvc/config.local` (mode 0600: it may hold the user's remote credentials)."""
    from configobj import ConfigObj  # DVC's own config parser (a DVC dependency)

    conf = ConfigObj(encoding="utf-8")
    conf["core"] = {"site_cache_dir": str(site_cache_dir)}
    if user.default_remote:
        conf["core"]["remote"] = user.default_remote
    # The user's own cache.type is not carried over: a build must not write through links.
    conf["cache"] = {**user.cache_options, "dir": str(user.cache_dir), "type": ",".join(link_types)}
    for name, opts in user.remotes.items():
        conf[f'remote "{name}"'] = dict(opts)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        conf.write(f)


def url_scheme(url: str) -> str:
    """"local" for paths and file:// URLs, else the URL scheme ("s3", "ssh", ...)."""
    m = re.match(r"([A-Za-z][\w+.-]*)://", url)
    if not m or m.group(1).lower() == "file":
        return "local"
    return m.group(1).lower()


def local_path(url: str) -> Path:
    return Path(url[len("file://"):] if url.startswith("file://") else url)


def plugin_installed(scheme: str, env: Mapping[str, str], cwd: Path) -> bool:
    """Whether the user's DVC supports remotes of `scheme` (from `dvc version`'s Supports list)."""
    if scheme == "local":
        return True
    res = run_dvc(cwd, "version", env=env, timeout=60)
    text = strip_ansi(res.stdout + res.stderr)
    supports: set[str] = set()
    in_block = False
    for line in text.splitlines():
        if line.startswith("Supports:"):
            in_block = True
            continue
        if in_block:
            if not line.startswith((" ", "\t")):
                break
            for part in line.split("),"):
                m = re.match(r"\s*([\w-]+)", part)
                if m:
                    supports.add(m.group(1).lower())
    return _PLUGIN_SCHEMES.get(scheme, scheme) in supports


def pip_extra(scheme: str) -> str:
    return _PLUGIN_SCHEMES.get(scheme, scheme)
