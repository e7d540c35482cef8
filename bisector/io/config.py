"""Configuration: `bisector.toml` (or `[tool.bisector]` in pyproject.toml), read once, frozen.

The file is read from the user's current checkout when a search starts and frozen into
the journal, so every commit is judged by the same probe and build settings.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from bisector.core.errors import UsageError

CONFIG_FILE = "bisector.toml"
SECTIONS = {"build", "probe", "probes", "search", "dvc", "data", "cache", "executor", "workers", "env"}


def load_file_config(repo: Path) -> dict[str, Any]:
    """The config table from bisector.toml or pyproject.toml's [tool.bisector]; {} if neither."""
    path = repo / CONFIG_FILE
    if path.is_file():
        table = _read_toml(path)
    else:
        pyproject = repo / "pyproject.toml"
        if not pyproject.is_file():
            return {}
        table = _read_toml(pyproject).get("tool", {}).get("bisector", {})
        path = pyproject
    unknown = set(table) - SECTIONS
    if unknown:
        raise UsageError(
            f"{path.name}: unknown section(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(SECTIONS))})"
        )
    return table


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path.name}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def table(config: dict[str, Any], name: str) -> dict[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise UsageError(f"{CONFIG_FILE}: [{name}] must be a table")
    return value


def probe_specs(config: dict[str, Any], cli_probe: str | None, cli_timeout: float | None) -> list[dict[str, Any]]:
    """The probe suite's specs: --probe wins; else [[probes]]; else [probe] (a command)."""
    if cli_probe == "manual":
        return [{"type": "manual"}]
    if cli_probe:
        spec: dict[str, Any] = {"type": "command", "run": cli_probe}
        if cli_timeout:
            spec["timeout"] = cli_timeout
        return [spec]
    probes = config.get("probes")
    if probes is not None:
        if not isinstance(probes, list) or not all(isinstance(p, dict) for p in probes):
            raise UsageError(f"{CONFIG_FILE}: [[probes]] must be a list of tables")
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
