"""Configuration: `bisector.toml` (or `[tool.bisector]` in pyproject.toml), read once, frozen.

The file is read from the user's current checkout when a search starts and frozen into
the journal, so every commit is judged by the same probe and build settings. Its schema is
below (msgspec Structs): a wrong type, an unknown key or a number out of range is one
UsageError that names the file, the key and what it must be. `load_file_config` still returns
the plain table (what the journal freezes), checked.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect
from msgspec import Meta, Struct

from bisector.core.errors import UsageError
from bisector.io.limits import MAX_BYTES, parse_limited

CONFIG_FILE = "bisector.toml"

Seconds = Annotated[float, Meta(gt=0)]  # nan fails gt; inf is rejected by `check`
Rate = Annotated[float, Meta(ge=0, lt=0.5)]


class _Table(Struct, forbid_unknown_fields=True):
    pass


class BuildTable(_Table):
    command: str | None = None
    timeout: Seconds | None = None
    on_failure: Literal["skip", "bad", "abort"] = "skip"
    outputs: list[str] = []
    cache: bool = True


class ProbeTable(Struct):
    """The keys every probe has; each probe type checks its own other keys (probes.registry)."""

    type: str = "command"
    name: str | None = None


class SearchTable(_Table):
    first_parent: bool = False
    paths: list[str] = []
    stop_early: bool = True
    noise: Rate | None = None
    flaky: bool | Rate | None = None
    learn_noise: bool | None = None
    confidence: Annotated[float, Meta(gt=0.5, lt=1)] = 0.99
    max_steps: Annotated[int, Meta(ge=1)] | None = None
    calibration_runs: Annotated[int, Meta(ge=1)] = 3
    noise_floor: Rate = 0.02
    bounds: Literal["check", "lazy", "trust"] = "lazy"  # which bounds are probed (--trust-bounds: trust)


class DvcTable(_Table):
    link_type: str = "reflink,copy"
    timeout: Seconds | None = None
    data_paths: list[str] = []
    verify: bool = False
    materialize: bool | None = None  # None: automatic (no data when the build is off and no probe reads it)
    offline: bool = False  # never ask a remote


class WorkersTable(_Table):
    gpus: list[str | int] = []


class ExecutorTable(_Table):
    kind: str | None = None  # local | slurm | dask://HOST:PORT (as --executor)
    max_jobs: Annotated[int, Meta(ge=1)] | None = None  # the largest -j accepted
    repo_url: str | None = None
    worker_cache: str | None = None
    # Slurm (`kind = "slurm"`, docs/parallel.md)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    cores: Annotated[int, Meta(ge=1)] = 1
    memory: str = "2GB"
    gpus: int | str | None = None
    walltime: str | None = None
    job_extra_directives: list[str] = []
    python: str | None = None
    queue_timeout: Seconds = 600


class EnvTable(_Table):
    mode: Literal["none", "uv", "command"] = "none"
    python: str | None = None
    command: str | None = None
    inputs: list[str] = []
    uv_args: list[str] = []
    timeout: Seconds | None = None
    uv: str | None = None


class WorkspaceTable(_Table):
    untracked: list[str] = []  # files or folders of your checkout, not in git, that every step needs


class FileConfig(_Table):
    build: BuildTable | None = None
    probe: ProbeTable | None = None
    probes: list[ProbeTable] | None = None
    search: SearchTable | None = None
    dvc: DvcTable | None = None
    workers: WorkersTable | None = None
    executor: ExecutorTable | None = None
    env: EnvTable | None = None
    workspace: WorkspaceTable | None = None
    data: dict[str, Any] | None = None  # reserved: accepted, not read
    cache: dict[str, Any] | None = None  # reserved: accepted, not read


SECTIONS = {
    "build": BuildTable, "probe": ProbeTable, "probes": ProbeTable, "search": SearchTable, "dvc": DvcTable,
    "workers": WorkersTable, "executor": ExecutorTable, "env": EnvTable, "workspace": WorkspaceTable,
}


def load_file_config(repo: Path) -> dict[str, Any]:
    """The config table from bisector.toml or pyproject.toml's [tool.bisector]; {} if neither."""
    path = repo / CONFIG_FILE
    prefix = ""
    if path.is_file():
        table = _read_toml(path)
    else:
        path = repo / "pyproject.toml"
        if not path.is_file():
            return {}
        tool = _read_toml(path).get("tool", {})
        table = tool.get("bisector", {}) if isinstance(tool, dict) else {}
        if not isinstance(table, dict):
            raise UsageError(f"pyproject.toml: [tool.bisector] must be a table, not {_show(table)}")
        prefix = "tool.bisector."
    check(table, path.name, prefix)
    return table


def check(table: dict[str, Any], file: str = CONFIG_FILE, prefix: str = "") -> FileConfig:
    """Validate a config table against the schema; one UsageError naming the key and the fix."""
    try:
        checked = msgspec.convert(table, FileConfig)
    except msgspec.ValidationError as exc:
        raise UsageError(f"{file}: {_explain(str(exc), table, prefix)}") from None
    for section, values in table.items():  # a number of seconds, a rate: never infinite
        for key, value in (values.items() if isinstance(values, dict) else ()):
            if isinstance(value, float) and math.isinf(value) and section != "probe":
                raise UsageError(f"{file}: {_where([section, key], prefix)} must be a finite number, not {value}")
    return checked


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        return parse_limited(tomllib.loads, data.decode("utf-8"), path.name)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path.name}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path.name}: not UTF-8 text (byte {exc.start}): fix the file") from None
    except RecursionError:
        raise UsageError(f"{path.name}: nested too deeply: fix the file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


# ------------------------------------------------------------------ msgspec errors, in words

_KINDS = {"bool": "a boolean (true or false)", "str": "a string", "float": "a number", "int": "an integer",
          "array": "a list", "object": "a table"}


def _explain(message: str, table: dict[str, Any], prefix: str) -> str:
    what, _, where = message.partition(" - at `$")
    steps = re.findall(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]", where.rstrip("`"))
    path: list[str | int] = [int(i) if i else key for key, i in steps]
    if m := re.match(r"Object contains unknown field `(.*)`", what):
        key = m[1]
        known = sorted(_fields(path))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean `{close[0]}`?" if close else f"use one of {', '.join(known)}"
        if not path:
            hint = f"did you mean [{prefix}{close[0]}]?" if close else f"use one of {', '.join(known)}"
            return f"unknown section [{prefix}{key}]: {hint}"
        return f"unknown key `{key}` in {_where(path, prefix)}: {hint}"
    value = _value(table, path)
    target = _where(path, prefix)
    if m := re.match(r"Expected `([^`]*)`, got `[^`]*`", what):
        if path == ["probes"]:
            return f"[[{prefix}probes]] must be a list of tables, not {_show(value)}"
        kinds = [_KINDS.get(k.strip(), k.strip()) for k in m[1].split("|") if k.strip() != "null"]
        return f"{target} must be {' or '.join(kinds)}, not {_show(value)}"
    if re.match(r"Expected `[^`]*` [<>]", what):  # out of range
        return f"{target} must be {_range(path)}, not {_show(value)}"
    if what.startswith("Invalid enum value"):
        kind = _field_type(path)
        choices = [str(v) for v in getattr(kind, "values", ())]
        return f"{target} must be one of {', '.join(sorted(choices))}, not {_show(value)}"
    return f"{target}: {what}"


def _field_type(path: list[str | int]) -> Any:
    """The msgspec type of the field at `path` (section, key), or None."""
    names = [p for p in path if isinstance(p, str)]
    cls = SECTIONS.get(names[0]) if names else None
    if cls is None or len(names) < 2:
        return None
    return next((f.type for f in msgspec.inspect.type_info(cls).fields if f.name == names[1]), None)


def _range(path: list[str | int]) -> str:
    """'a number >= 0 and < 0.5' for the field at `path`."""
    kind = _field_type(path)
    kinds = getattr(kind, "types", (kind,))
    for k in kinds:
        if isinstance(k, (msgspec.inspect.FloatType, msgspec.inspect.IntType)):
            bounds = [f"{op} {v:g}" for op, v in ((">=", k.ge), (">", k.gt), ("<", k.lt), ("<=", k.le)) if v is not None]
            noun = "an integer" if isinstance(k, msgspec.inspect.IntType) else "a number"
            return f"{noun} {' and '.join(bounds)}"
    return "in range"


def _fields(path: list[str | int]) -> tuple[str, ...]:
    names = [p for p in path if isinstance(p, str)]
    cls = SECTIONS.get(names[0]) if names else FileConfig
    return cls.__struct_fields__ if cls is not None else ()


def _where(path: list[str | int], prefix: str) -> str:
    """`[search] first_parent`, `[[probes]] #2 name`, `[build]`."""
    if not path:
        return "the file"
    section, rest = path[0], path[1:]
    if rest and isinstance(rest[0], int):
        head = f"[[{prefix}{section}]] #{rest[0] + 1}"
        rest = rest[1:]
    else:
        head = f"[{prefix}{section}]"
    if not rest:
        return head
    tail = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest).lstrip(".")
    return f"{head} {tail}"


def _value(table: Any, path: list[str | int]) -> Any:
    for p in path:
        try:
            table = table[p]
        except (KeyError, IndexError, TypeError):
            return None
    return table


def _show(value: Any) -> str:
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def table(config: dict[str, Any], name: str) -> dict[str, Any]:
    """One section of a (checked) config, {} when absent."""
    return config.get(name) or {}


def probe_specs(config: dict[str, Any], cli_probe: str | None, cli_timeout: float | None,
                shell: bool = False) -> list[dict[str, Any]]:
    """The probe suite's specs: --probe (--probe-shell: a shell string) wins; else [[probes]]; else [probe]."""
    if cli_probe == "manual" and not shell:
        return [{"type": "manual"}]
    if cli_probe or (shell and cli_probe is not None):
        spec: dict[str, Any] = {"type": "command", "run": cli_probe, **({"shell": True} if shell else {})}
        if cli_timeout:
            spec["timeout"] = cli_timeout
        return [spec]
    probes = config.get("probes")
    if probes is not None:
        specs = [dict(p) for p in probes]
    elif "probe" in config:
        specs = [dict(table(config, "probe"))]
    else:
        raise UsageError("no probe: pass --probe 'CMD' or add a [probe] table to bisector.toml")
    for s in specs:
        s.setdefault("type", "command")
        if cli_timeout and "timeout" not in s and s["type"] != "manual":
            s["timeout"] = cli_timeout
    return specs
