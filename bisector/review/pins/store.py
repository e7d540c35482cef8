"""Pins: named known-good configurations in `.bisector/pins.toml`, usable as `@NAME` revisions.

A pin records a commit, the DVC data hashes and params at it, the probe results that made it
good and the environment. The file is small, committable and human-diffable: it is written by
a tiny deterministic TOML writer (pins sorted by name, fields in a fixed order) and read with
tomllib as data only. Restoring a pin (`restore`) lives in this module too.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from bisector.core.errors import UsageError
from bisector.io.git import Blobs, git, git_ok, is_ancestor, repo_root, show
from bisector.io.git import parents as git_parents

PINS_FILE = Path(".bisector") / "pins.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# `@NAME`, optionally followed by git's ancestry suffixes (`@tuesday~2`, `@tuesday^`).
PIN_REV_RE = re.compile(r"^@([A-Za-z0-9_-]+)([~^].*)?$")
ENV_PACKAGES = ("bisector", "torch", "numpy", "dvc")
_FIELDS = ("commit", "created", "note", "data_rev", "source", "verdict",
           "data", "params", "config", "probes", "environment")
Scalar = str | int | float | bool


@dataclass
class Pin:
    name: str
    commit: str
    created: str = ""  # ISO 8601, UTC
    note: str = ""
    data_rev: str | None = None  # the revision the data was taken from, when not `commit`
    source: str = ""  # "verify", "session <id>" or "unverified"
    verdict: str | None = None  # "good" when a probe judged it
    data: dict[str, str] = field(default_factory=dict)  # DVC-tracked path -> md5
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, flattened ("train.lr")
    config: dict[str, Any] = field(default_factory=dict)  # the bisector config, flattened
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # probe -> verdict/summary/value
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.commit[:10]


# ------------------------------------------------------------------ file format
def pins_path(repo: Path) -> Path:
    return repo / PINS_FILE


def _key(k: str) -> str:
    return k if NAME_RE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    # json.dumps escapes are valid TOML basic-string escapes (\n, \", \\, \uXXXX).
    return json.dumps(str(v), ensure_ascii=False)


def dumps(pins: Iterable[Pin]) -> str:
    """The pins file: deterministic, one field per line, so `git diff` shows what changed."""
    out = ["# bisector pins: known-good configurations. `bisector pins` lists them;",
           "# use one as a revision with @NAME (e.g. `bisector run --good @NAME`)."]
    for p in sorted(pins, key=lambda p: p.name):
        out += ["", f"[pins.{_key(p.name)}]", f"commit = {_value(p.commit)}"]
        for k in ("created", "note", "data_rev", "source", "verdict"):
            v = getattr(p, k)
            if v:
                out.append(f"{k} = {_value(v)}")
        for k in ("data", "params", "config", "environment"):
            table = getattr(p, k)
            if table:
                out.append(f"\n[pins.{_key(p.name)}.{k}]")
                out += [f"{_key(n)} = {_value(table[n])}" for n in sorted(table)]
        for probe in sorted(p.probes):
            out.append(f"\n[pins.{_key(p.name)}.probes.{_key(probe)}]")
            obs = p.probes[probe]
            out += [f"{_key(n)} = {_value(obs[n])}" for n in sorted(obs) if obs[n] is not None]
    return "\n".join(out) + "\n"


def _line_of(text: str, name: str, key: str | None) -> int:
    """The line of `key` in the table of pin `name` (or of its header): for error messages."""
    header = re.compile(r"^\s*\[\s*pins\s*\.\s*(\"?)" + re.escape(name) + r"\1\s*(\.\s*(\S+?)\s*)?\]")
    found, table = 0, None
    for i, line in enumerate(text.splitlines(), start=1):
        m = header.match(line)
        if m:
            table = m.group(3) or ""
            found = found or i
            if key is not None and table == key:
                return i
            continue
        if line.lstrip().startswith("["):
            table = None
        elif table == "" and key is not None and re.match(r"^\s*\"?" + re.escape(key) + r"\"?\s*=", line):
            return i
    return found or 1


def _check(cond: bool, text: str, name: str, key: str | None, what: str) -> None:
    if not cond:
        line = _line_of(text, name, key)
        raise UsageError(
            f"{PINS_FILE}:{line}: pin {json.dumps(name)}: {what} "
            f"(fix that line, or drop the pin with `bisector pin rm {name}`)"
        )


def _scalar_or_list(v: Any) -> bool:
    if isinstance(v, list):
        return all(isinstance(x, (str, int, float, bool)) for x in v)
    return isinstance(v, (str, int, float, bool))


def parse(text: str) -> dict[str, Pin]:
    """Pins from the file's text; a one-line UsageError naming the line for anything invalid."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        where = f"{PINS_FILE}:{m.group(1)}" if m else str(PINS_FILE)
        reason = re.sub(r" \(at line.*", "", msg)
        raise UsageError(f"{where}: invalid TOML: {reason} (fix that line)") from None
    extra = set(doc) - {"pins"}
    if extra or not isinstance(doc.get("pins", {}), dict):
        raise UsageError(f"{PINS_FILE}: only [pins.NAME] tables belong in it, not {', '.join(sorted(extra)) or 'pins'}")
    pins = {}
    for name, t in doc.get("pins", {}).items():
        _check(bool(NAME_RE.match(name)), text, name, None, "a pin name is letters, digits, '-' and '_' only")
        _check(isinstance(t, dict), text, name, None, "must be a table")
        for k in t:
            _check(k in _FIELDS, text, name, k, f"unknown field {k!r} (known: {', '.join(_FIELDS)})")
        c = t.get("commit")
        _check(isinstance(c, str) and bool(SHA_RE.match(c)), text, name, "commit", "commit must be a 40-hex sha")
        d = t.get("data_rev")
        _check(d is None or (isinstance(d, str) and bool(SHA_RE.match(d))), text, name, "data_rev",
               "data_rev must be a 40-hex sha")
        for k in ("created", "note", "source", "verdict"):
            _check(isinstance(t.get(k, ""), str), text, name, k, f"{k} must be a string")
        for k in ("data", "environment"):
            v = t.get(k, {})
            _check(isinstance(v, dict) and all(isinstance(x, str) for x in v.values()), text, name, k,
                   f"[{k}] must map names to strings")
        for k in ("params", "config"):
            v = t.get(k, {})
            _check(isinstance(v, dict) and all(_scalar_or_list(x) for x in v.values()), text, name, k,
                   f"[{k}] must hold plain values (flattened keys)")
        probes = t.get("probes", {})
        _check(isinstance(probes, dict) and all(isinstance(x, dict) for x in probes.values()), text, name,
               "probes", "[probes] must hold one table per probe")
        pins[name] = Pin(name=name, commit=c, created=t.get("created", ""), note=t.get("note", ""),
                         data_rev=d, source=t.get("source", ""), verdict=t.get("verdict") or None,
                         data=dict(t.get("data", {})), params=dict(t.get("params", {})),
                         config=dict(t.get("config", {})), probes={k: dict(v) for k, v in probes.items()},
                         environment=dict(t.get("environment", {})))
    return pins


def load_pins(repo: Path) -> dict[str, Pin]:
    path = pins_path(repo)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {PINS_FILE}: {exc}") from None
    return parse(text)


def save_pins(repo: Path, pins: Mapping[str, Pin]) -> Path:
    path = pins_path(repo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(dumps(pins.values()), encoding="utf-8")
    tmp.replace(path)
    return path


def get_pin(repo: Path, name: str) -> Pin:
    pins = load_pins(repo)
    if name not in pins:
        known = ", ".join(sorted(pins)) or "none yet"
        raise UsageError(f"no pin named {name!r} (pins: {known}); create it with `bisector pin {name} --rev REV`")
    return pins[name]


# ------------------------------------------------------------ what a revision holds
def _show(repo: Path, rev: str, path: str) -> str | None:
    return show(repo, rev, path)


def _yaml(text: str, where: str) -> Any:
    import yaml  # installed with dvc; imported here to keep the CLI start fast

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{where}: invalid YAML: {str(exc).splitlines()[0]}") from None


def data_hashes(repo: Path, rev: str) -> dict[str, str]:
    """The DVC data inputs of `rev` -> hash ("md5:..."), as the data axis sees them; {} without DVC.

    Data inputs (bisector.io.data.files): the outs of data-source `.dvc` files and the `dvc.lock`
    dependencies that are neither stage outputs nor tracked by git; read from git objects.
    """
    from bisector.io.data.files import inputs_at

    return {p: d.hash for p, d in sorted(inputs_at(repo, rev).items())}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested params to dotted keys (`train.lr`); lists of plain values stay lists; None is dropped."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and not _scalar_or_list(value):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    elif value is not None and prefix:
        out[prefix] = value if _scalar_or_list(value) else str(value)
    return out


def params_at(repo: Path, rev: str) -> dict[str, Any]:
    text = _show(repo, rev, "params.yaml")
    return flatten(_yaml(text, f"params.yaml at {rev[:10]}")) if text else {}


def pin_environment() -> dict[str, str]:
    """Versions from package metadata (nothing is imported) and the platform."""
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ENV_PACKAGES:
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env


def probe_table(observations: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Journal observations -> the pin's [probes] tables (verdict, summary, main number)."""
    from bisector.review.report import main_number  # the one definition of "a probe's main number"

    out = {}
    for o in observations:
        row: dict[str, Any] = {"verdict": o.get("verdict"), "summary": o.get("summary", "")}
        value = main_number(o)
        if value is not None:
            row["value"] = value[1]
            row["measure"] = value[0]
        out[str(o.get("probe"))] = row
    return out


# --------------------------------------------------------------------- the API
def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _resolve_plain(repo: Path, rev: str, what: str) -> str:
    from bisector.io.git import resolve

    return resolve(repo, expand_rev(repo, rev), what)


def make_pin(repo: Path, name: str, rev: str = "HEAD", *, data_rev: str | None = None, note: str = "",
             verification: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
             source: str = "unverified") -> Pin:
    """A pin of `rev` (data from `data_rev` when given) with params, data hashes and environment."""
    if not NAME_RE.match(name):
        raise UsageError(f"invalid pin name {name!r}: use letters, digits, '-' and '_' only")
    sha = _resolve_plain(repo, rev, "revision to pin")
    dsha = _resolve_plain(repo, data_rev, "data revision") if data_rev else None
    if config is None:
        from bisector.io.config import load_file_config

        config = load_file_config(repo)
    pin = Pin(name=name, commit=sha, created=_now(), note=note, data_rev=dsha if dsha != sha else None,
              source=source, data=data_hashes(repo, dsha or sha), params=params_at(repo, sha),
              config=flatten(dict(config)), environment=pin_environment())
    if verification is not None:
        pin.verdict = verification.get("verdict")
        pin.probes = probe_table(verification.get("observations", []))
    return pin


def add_pin(repo: Path, pin: Pin, *, force: bool = False) -> Path:
    pins = load_pins(repo)
    if pin.name in pins and not force:
        raise UsageError(f"a pin named {pin.name!r} exists ({pins[pin.name].short}): pass --force to replace it")
    pins[pin.name] = pin
    return save_pins(repo, pins)


def create_pin(repo_path: Path, name: str, rev: str = "HEAD", *, data_rev: str | None = None, note: str = "",
               verify: bool = False, force: bool = False) -> Pin:
    """`bisector pin NAME`: record (and with `verify`, first probe) a known-good configuration."""
    repo = repo_root(repo_path)
    verification = None
    if verify:
        dsha = _resolve_plain(repo, data_rev, "data revision") if data_rev else None
        verification = verify_rev(repo, _resolve_plain(repo, rev, "revision to pin"), data_rev=dsha)
        if verification["verdict"] != "good" and not force:
            raise UsageError(f"{rev} is {verification['verdict']} for the probe ({verification['summary']}): "
                             "pin a good revision, or pass --force to record it anyway", exit_code=1)
    pin = make_pin(repo, name, rev, data_rev=data_rev, note=note, verification=verification,
                   source="verify" if verify else "unverified")
    add_pin(repo, pin, force=force)
    return pin


def remove_pin(repo_path: Path, name: str) -> Pin:
    repo = repo_root(repo_path)
    pin = get_pin(repo, name)
    pins = load_pins(repo)
    del pins[name]
    save_pins(repo, pins)
    return pin


def check_commit(repo: Path, pin: Pin) -> str:
    """The pin's commit, or a one-line error when history was rewritten under it."""
    for what, sha in (("commit", pin.commit), ("data_rev", pin.data_rev)):
        if sha and not git_ok(repo, "cat-file", "-e", f"{sha}^{{commit}}"):
            raise UsageError(
                f"pin {pin.name!r}: {what} {sha[:10]} no longer exists in this repository (history rewritten?): "
                f"re-pin with `bisector pin {pin.name} --force --rev REV`, or drop it with `bisector pin rm {pin.name}`"
            )
    return pin.commit


def resolve_pin(repo: Path, ref: str) -> str:
    """`@NAME` -> the pin's commit sha (checked to exist)."""
    m = PIN_REV_RE.match(ref)
    if not m:
        raise UsageError(f"not a pin reference: {ref!r} (write @NAME)")
    return check_commit(repo, get_pin(repo, m.group(1)))


def expand_rev(repo: Path, rev: str) -> str:
    """Any revision with `@NAME` replaced by the pin's sha (`@NAME~2` keeps its suffix); others unchanged."""
    m = PIN_REV_RE.match(rev) if rev else None
    if not m:
        return rev
    return resolve_pin(repo, "@" + m.group(1)) + (m.group(2) or "")


def latest_ancestor_pin(repo: Path, bad_sha: str) -> Pin | None:
    """The pin nearest to `bad_sha` among those that are its proper ancestors (for `run` with no --good)."""
    best: tuple[int, Pin] | None = None
    for pin in load_pins(repo).values():
        if pin.commit == bad_sha or not git_ok(repo, "cat-file", "-e", f"{pin.commit}^{{commit}}"):
            continue
        if pin.verdict not in (None, "good") or not is_ancestor(repo, pin.commit, bad_sha):
            continue
        distance = int(git(repo, "rev-list", "--count", f"{pin.commit}..{bad_sha}").strip())
        if best is None or distance < best[0]:
            best = (distance, pin)
    return best[1] if best else None


def pin_from_session(repo_path: Path, summary: Any, name: str, *, rev: str | None = None, note: str = "",
                     force: bool = False) -> Pin:
    """Pin a revision a session observed good, with the observations that made it good.

    `summary` is a `journal.SessionSummary`. Default revision: the newest one observed good (the
    culprit's parent after a found culprit), else the good bound.
    """
    repo = repo_root(repo_path)
    goods = [e for e in summary.steps if e.get("verdict") == "good"]
    if rev is not None:
        sha = _resolve_plain(repo, rev, "revision to pin")
        goods = [e for e in goods if e["commit"] == sha]
        if not goods:
            raise UsageError(f"session {summary.id} did not observe {rev} good: pin it with `bisector pin {name} --verify`")
    if not goods:
        raise UsageError(f"session {summary.id} observed no good revision: nothing to pin")
    culprit = (summary.end or {}).get("culprit")
    chosen = goods[0]
    if rev is None and culprit:
        parents = git_parents(repo, culprit)
        chosen = next((e for e in goods if e["commit"] in parents), goods[0])
    elif rev is None:
        chosen = next((e for e in goods if e["role"] == "good-bound"), goods[0])
    pin = make_pin(repo, name, chosen["commit"], data_rev=chosen.get("data_rev"), note=note,
                   verification={"verdict": "good", "observations": chosen.get("observations", [])},
                   config=summary.start.get("config", {}).get("file", {}), source=f"session {summary.id}")
    add_pin(repo, pin, force=force)
    return pin


def verify_rev(repo: Path, rev: str, *, data_rev: str | None = None, workspace_factory: Any = None) -> dict[str, Any]:
    """Build and probe `rev` (with the data of `data_rev`) in a throwaway worktree, probes of bisector.toml.

    Returns {"verdict", "summary", "build", "observations"} (observations as journal JSON).
    The workspace is the session's (`session.make_workspace`: DVC-aware where the session is).
    """
    import inspect
    import secrets
    import shutil

    from bisector.run import session
    from bisector.build.run import BuildConfig
    from bisector.io.config import load_file_config, probe_specs, table
    from bisector.journal.writer import JOURNAL_DIR
    from bisector.probes.registry import make_suite
    from bisector.run.step import execute_step
    from bisector.io.workspace import state_dir

    config = load_file_config(repo)
    b = table(config, "build")
    build = BuildConfig(command=b.get("command"), timeout=b.get("timeout"), on_failure=b.get("on_failure", "skip"))
    suite = make_suite(probe_specs(config, None, None), user_cwd=Path(os.getcwd()),
                       frozen_dir=repo / JOURNAL_DIR / "frozen")
    session_dir = state_dir(repo) / "pin-verify" / f"{os.getpid()}-{secrets.token_hex(3)}"
    ws = (workspace_factory or getattr(session, "make_workspace", session.Workspace))(repo, session_dir)
    if data_rev is not None and len(inspect.signature(ws.checkout).parameters) < 2:
        raise UsageError("this repository's workspace cannot take data from another revision: pin without --verify")
    try:
        ws.open(rev)
        out = execute_step(ws, suite, build, rev, 0, session_dir / "logs", data_rev=data_rev)
    finally:
        ws.close()
        shutil.rmtree(session_dir, ignore_errors=True)
    summary = "; ".join(f"{o['probe']}: {o.get('summary', '')}" for o in out.observations)
    if not out.observations:
        summary = f"build {out.build.get('status')}"
    return {"verdict": out.verdict.value, "summary": summary, "build": out.build, "observations": out.observations}


# --------------------------------------------------------------------- restore
@dataclass
class Restored:
    path: Path
    commit: str
    dvc: bool  # a DVC repository: its data was checked out from the user's cache
    data_files: int = 0


def restore(repo_path: Path, name: str, dest: Path | str) -> Restored:
    """Materialize pin `name` (code, then DVC data from the user's cache) into the new folder `dest`."""
    repo = repo_root(repo_path)
    pin = get_pin(repo, name)
    check_commit(repo, pin)
    dest = Path(dest).resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} is not empty: restore into a new or empty folder")
    dest.mkdir(parents=True, exist_ok=True)
    # A local clone hardlinks or copies the whole object store, so a commit that no branch
    # reaches any more is restorable too; the user's repository is only read.
    git(repo, "clone", "--quiet", "--no-checkout", str(repo), str(dest))
    git(dest, "checkout", "--quiet", "--detach", pin.commit)
    if pin.data_rev:
        # Code from `commit`, data from `data_rev`: overlay only the data-source .dvc files.
        with Blobs(repo) as blobs:  # one reader for every .dvc file
            for path in git(repo, "ls-tree", "-r", "--name-only", "-z", pin.data_rev).split("\0"):
                if path.endswith(".dvc") and not path.startswith(".dvc/"):
                    (dest / path).parent.mkdir(parents=True, exist_ok=True)
                    (dest / path).write_bytes(blobs.read(pin.data_rev, path) or b"")
    if not (dest / ".dvc").is_dir():
        return Restored(dest, pin.commit, dvc=False)
    from bisector.io.data.dvccli import dvc_env, read_user_config, run_dvc, strip_ansi, write_config_local
    from bisector.io.data.files import inputs_at

    user = read_user_config(repo)
    # The user's cache and remotes, absolute; copies, never links (a build must not write into the cache).
    write_config_local(dest / ".dvc" / "config.local", user, ("reflink", "copy"), dest / ".dvc" / "tmp" / "site")
    env = dvc_env()
    res = run_dvc(dest, "checkout", "--force", env=env)
    if res.returncode != 0 and user.remotes:
        run_dvc(dest, "fetch", env=env)
        res = run_dvc(dest, "checkout", "--force", env=env)
    inputs = inputs_at(repo, pin.data_rev or pin.commit)
    missing = [p for p, d in inputs.items() if d.source.endswith(".dvc") and not (dest / p).exists()]
    if res.returncode != 0 or missing:
        if missing:
            what = f"{len(missing)} data object(s) are gone from the DVC cache ({', '.join(missing[:3])})"
        else:
            last = (strip_ansi(res.stderr or res.stdout).strip().splitlines() or ["?"])[-1]
            what = f"`dvc checkout` failed: {last[:200]}"
        raise UsageError(f"pin {name!r}: the code is restored in {dest} but {what}: "
                         f"run `dvc pull` there (or `dvc fetch` in {repo} first)", exit_code=1)
    return Restored(dest, pin.commit, dvc=True, data_files=len(inputs))
