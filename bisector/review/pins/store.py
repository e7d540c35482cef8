"""Pins: named known-good configurations in `.bisector/pins.toml`, usable as `@NAME` revisions.

A pin records a commit, the DVC data hashes and params at it, the probe results that made it
good, the versions it was pinned with and (with `[env]`) the key of its environment. The file is small, committable and human-diffable. It is read with
tomllib as data only (every field checked, errors name the line) and written with tomlkit:
a new file holds the pins sorted by name, fields in a fixed order; adding or removing a pin
edits only that pin's tables, so the user's comments and order stay. Making a pin is in
`make.py`, restoring one in `restore.py`.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from bisector.core.errors import JournalError, UsageError
from bisector.io.git import git, git_ok, is_ancestor, repo_root
from bisector.io.confine import confined
from bisector.io.limits import parse_limited
from bisector.journal.read import read_bounded

if TYPE_CHECKING:  # pragma: no cover
    from tomlkit.container import Container
    from tomlkit.items import Item, Table
    from tomlkit.toml_document import TOMLDocument


def _tomlkit() -> Any:
    """tomlkit, imported when pins.toml is written (reading is tomllib): `bisector run` skips ~15 ms."""
    import tomlkit
    import tomlkit.items

    return tomlkit


PINS_FILE = Path(".bisector") / "pins.toml"
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# `@NAME`, optionally followed by git's ancestry suffixes (`@tuesday~2`, `@tuesday^`).
PIN_REV_RE = re.compile(r"^@([A-Za-z0-9_-]+)([~^].*)?$")
_FIELDS = ("commit", "created", "note", "data_rev", "source", "verdict", "probe_digest",
           "data", "params", "config", "probes", "environment", "env")


@dataclass
class Pin:
    name: str
    commit: str
    created: str = ""  # ISO 8601, UTC
    note: str = ""
    data_rev: str | None = None  # the revision the data was taken from, when not `commit`
    source: str = ""  # "verify", "session <id>" or "unverified"
    verdict: str | None = None  # "good" when a probe judged it
    probe_digest: str = ""  # which probe and build judged it (`run.plan.judge_digest`): a run with them trusts the pin
    data: dict[str, str] = field(default_factory=dict)  # DVC-tracked path -> md5
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, flattened ("train.lr")
    config: dict[str, Any] = field(default_factory=dict)  # the bisector config, flattened
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # probe -> verdict/summary/value
    environment: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # [env] mode not none: key, mode, kind of its environment

    @property
    def short(self) -> str:
        return self.commit[:10]


# ------------------------------------------------------------------ file format
def pins_path(repo: Path) -> Path:
    return repo / PINS_FILE


def _sub(values: Mapping[str, Any]) -> Table:
    tomlkit = _tomlkit()
    t = tomlkit.table()
    for k in sorted(values):
        if values[k] is not None:
            t.add(k, values[k])
    return t


def _pin_table(p: Pin) -> Table:
    """One pin as a TOML table: scalars in a fixed order, then its sub-tables, keys sorted."""
    tomlkit = _tomlkit()
    t = tomlkit.table()
    t.add("commit", p.commit)
    for k in ("created", "note", "data_rev", "source", "verdict", "probe_digest"):
        v = getattr(p, k)
        if v:
            t.add(k, v)
    for k in ("data", "params", "config", "environment", "env"):
        if getattr(p, k):
            t.add(k, _sub(getattr(p, k)))
    if p.probes:
        probes = tomlkit.table(is_super_table=True)
        for name in sorted(p.probes):
            probes.add(name, _sub(p.probes[name]))
        t.add("probes", probes)
    return t


def _new_document(pins: Iterable[Pin], header: bool = True) -> TOMLDocument:
    tomlkit = _tomlkit()
    doc = tomlkit.document()
    if header:
        doc.add(tomlkit.comment("bisector pins: known-good configurations. `bisector pins` lists them;"))
        doc.add(tomlkit.comment("use one as a revision with @NAME (e.g. `bisector run --good @NAME`)."))
    table = tomlkit.table(is_super_table=True)
    for p in sorted(pins, key=lambda p: p.name):
        table.add(p.name, _pin_table(p))
    doc.add("pins", table)
    return doc


def dumps(pins: Iterable[Pin]) -> str:
    """A new pins file: pins sorted by name, one field per line, so `git diff` shows what changed."""
    tomlkit = _tomlkit()
    return tomlkit.dumps(_new_document(pins))


def show_text(pin: Pin) -> str:
    """One pin as the file holds it (for `bisector pin show`)."""
    tomlkit = _tomlkit()
    return tomlkit.dumps(_new_document([pin], header=False)).lstrip("\n")


def _last_container(table: Table) -> Container:
    """The container whose end is the end of `table` in the file (its last sub-table's, if any)."""
    while (last := _last_table(table.value.body)) is not None:
        table = last
    return table.value


def _last_table(body: list[tuple[Any, Item]]) -> Table | None:
    """The last item of a body when it is a table, skipping trailing comments and blank lines."""
    tomlkit = _tomlkit()
    for _, item in reversed(body):
        if isinstance(item, (tomlkit.items.Comment, tomlkit.items.Whitespace)):
            continue
        return item if isinstance(item, tomlkit.items.Table) else None
    return None


def _take_tail(table: Table) -> list[Item]:
    """Cut the comments and blank lines after the last value of `table`: in the file they
    stand above the next table, so they belong to what follows."""
    tomlkit = _tomlkit()
    body = _last_container(table).body
    tail: list[Item] = []
    while body and isinstance(body[-1][1], (tomlkit.items.Comment, tomlkit.items.Whitespace)):
        tail.insert(0, body.pop()[1])
    return tail


def _insert_before(container: Container, key: str, items: list[Item]) -> None:
    """Comments and blank lines into `container`, just before `key`."""
    body = container.body
    at = next(i for i, (k, _) in enumerate(body) if k is not None and k.key == key)
    body[at:at] = [(None, item) for item in items]
    # The container maps each key to its index in the body: shift those after the insertion.
    for k, v in list(container._map.items()):
        shift = lambda j: j + len(items) if j >= at else j  # noqa: E731
        container._map[k] = tuple(map(shift, v)) if isinstance(v, tuple) else shift(v)


def updated_text(text: str | None, old: Mapping[str, Pin], pins: Mapping[str, Pin]) -> str:
    """The pins file `text` (read as `old`) changed to hold `pins`: a removed pin's table goes,
    a changed one is rewritten in its place, a new one is added at the end. Every other line,
    the user's comments and the order of the pins stay as they are."""
    tomlkit = _tomlkit()
    if not text or not text.strip():
        return dumps(pins.values())
    doc = tomlkit.parse(text)
    if "pins" not in doc:
        doc.add("pins", tomlkit.table(is_super_table=True))
    table = doc["pins"]
    names = list(table.keys())
    for i, name in enumerate(names):
        if name in pins and old.get(name) == pins[name]:
            continue
        tail = _take_tail(table[name])
        if name in pins:
            new = _pin_table(pins[name])
            table[name] = new
            target = _last_container(table[name])
        else:
            del table[name]
            before = [n for n in names[:i] if n in table]
            if not before:  # the first pin: what stood above the next one goes above the pins
                _insert_before(doc, "pins", tail)
                continue
            target = _last_container(table[before[-1]])
        for item in tail:
            target.add(item)
    for name in sorted(set(pins) - set(names)):
        table.add(name, _pin_table(pins[name]))
    return tomlkit.dumps(doc)


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
        doc = parse_limited(tomllib.loads, text, str(PINS_FILE))
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
        for k in ("created", "note", "source", "verdict", "probe_digest"):
            _check(isinstance(t.get(k, ""), str), text, name, k, f"{k} must be a string")
        for k in ("data", "environment", "env"):
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
                         probe_digest=t.get("probe_digest", ""),
                         data=dict(t.get("data", {})), params=dict(t.get("params", {})),
                         config=dict(t.get("config", {})), probes={k: dict(v) for k, v in probes.items()},
                         environment=dict(t.get("environment", {})), env=dict(t.get("env", {})))
    return pins


def load_pins(repo: Path) -> dict[str, Pin]:
    text = _read_text(pins_path(repo))
    return parse(text) if text is not None else {}


MAX_PINS_BYTES = 16 * 1024 * 1024


def _read_text(path: Path) -> str | None:
    """The pins file's text (None: no file), bounded: a regular UTF-8 file of at most 16 MB."""
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        data = read_bounded(path, MAX_PINS_BYTES, "pins file", f"fix {PINS_FILE} or move it away")
        return data.decode("utf-8")
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {PINS_FILE}: not UTF-8 text (byte {exc.start}): fix it or move it away") from None


def save_pins(repo: Path, pins: Mapping[str, Pin]) -> Path:
    """Write `pins` to the pins file, editing only the pins that changed (see `updated_text`)."""
    path = pins_path(repo)
    confined(repo, PINS_FILE.as_posix(), last=False)  # `.bisector` may not lead out of the checkout
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _read_text(path)
    old = parse(text) if text else {}
    tmp = path.with_suffix(".toml.tmp")
    if tmp.is_symlink():
        tmp.unlink()  # a committed symlink is replaced, never written through
    tmp.write_text(updated_text(text, old, pins), encoding="utf-8")
    tmp.replace(path)
    return path


def get_pin(repo: Path, name: str) -> Pin:
    pins = load_pins(repo)
    if name not in pins:
        known = ", ".join(sorted(pins)) or "none yet"
        raise UsageError(f"no pin named {name!r} (pins: {known}); create it with `bisector pin {name} --rev REV`")
    return pins[name]


def remove_pin(repo: Path, name: str) -> Pin:
    """Drop pin `name` from the file (its tables only); the removed pin."""
    repo = repo_root(repo)
    try:
        pins = load_pins(repo)
    except UsageError:
        return _remove_malformed(repo, name)  # `pin rm` removes any pin, even one that does not parse
    pin = get_pin(repo, name)
    del pins[name]
    save_pins(repo, pins)
    return pin


def _remove_malformed(repo: Path, name: str) -> Pin:
    """Drop the tables of pin `name` from a pins file that holds an invalid pin (valid TOML)."""
    tomlkit = _tomlkit()
    path = pins_path(repo)
    text = _read_text(path) or ""
    try:
        table = tomllib.loads(text).get("pins")
    except tomllib.TOMLDecodeError:
        load_pins(repo)  # the TOML itself is broken: its one-line error names the line to fix
        raise
    if not isinstance(table, dict) or name not in table:
        known = ", ".join(sorted(table)) if isinstance(table, dict) else "none"
        raise UsageError(f"no pin named {name!r} in {PINS_FILE} (pins: {known})")
    raw = table[name]
    commit = raw.get("commit") if isinstance(raw, dict) else None
    # Every other pin compares equal to itself, so only `name`'s tables are rewritten (removed).
    others = {n: n for n in table if n != name}
    try:
        new_text = updated_text(text, others, others)  # type: ignore[arg-type]
    except Exception:  # a pin that is not even a table: drop the key, comments around it stay
        doc = tomlkit.parse(text)
        del doc["pins"][name]
        new_text = tomlkit.dumps(doc)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(new_text, encoding="utf-8")
    tmp.replace(path)
    return Pin(name=name, commit=commit if isinstance(commit, str) else "(malformed)")


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
