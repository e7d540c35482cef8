"""Probe specs (`[[probes]]` tables of bisector.toml) to probe objects: built-ins and plugins.

Third-party probes register a factory under the entry-point group `bisector.probes`:

    [project.entry-points."bisector.probes"]
    latency = "my_pkg.probes:make_latency_probe"

A factory has the built-ins' signature: `factory(spec, *, user_cwd, frozen_dir) -> Probe`.
Importing this module imports neither torch nor numpy, nor any plugin (until it is used).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from bisector.core.errors import UsageError
from bisector.probes import adapter, basic, harm, manual, metric, pytest_probe, sanity
from bisector.probes.base import Probe
from bisector.probes.command import CommandProbe
from bisector.probes.suite import ProbeSuite

if TYPE_CHECKING:  # pragma: no cover
    from importlib import metadata

ENTRY_POINT_GROUP = "bisector.probes"
Factory = Callable[..., Probe]
_COMMAND_KEYS = ("run", "command", "timeout", "on_timeout", "repeatable", "shell", "place", "probe_from", "reads_data")


def _command(spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path) -> Probe:
    adapter.check_keys(spec, _COMMAND_KEYS, "command")
    return CommandProbe.from_spec(spec, user_cwd=user_cwd, frozen_dir=frozen_dir)


# The built-in probe types: factory and one-line description, in the order `bisector probes` lists them.
_BUILTINS: dict[str, tuple[Factory, str]] = {
    "command": (_command, "a shell command; exit 0 good, 125 skip, 1-127 bad (as `git bisect run`)"),
    "pytest": (pytest_probe.PytestProbe, pytest_probe.DESCRIPTION),
    "metric": (metric.MetricProbe, metric.DESCRIPTION),
    "sanity": (sanity.SanityProbe, sanity.DESCRIPTION),
    "basic": (basic.BasicProbe, basic.DESCRIPTION),
    "harm": (harm.HarmProbe, harm.DESCRIPTION),
    "manual": (manual.ManualProbe, manual.DESCRIPTION),
}
BUILTINS = tuple(_BUILTINS)


def _builtin(name: str) -> tuple[Factory, str]:
    return _BUILTINS[name]


def _plugins() -> dict[str, metadata.EntryPoint]:
    from importlib import metadata  # only for plugins: its import costs ~20 ms at every start

    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in BUILTINS:  # a plugin never replaces a built-in
            found.setdefault(ep.name, ep)
    return found


def _describe(obj: Any) -> str:
    text = getattr(obj, "description", None) or getattr(obj, "DESCRIPTION", None) or (obj.__doc__ or "")
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no description)"


def available() -> dict[str, str]:
    """Probe type -> one-line description: the built-ins, then installed plugins (sorted)."""
    out = {name: _builtin(name)[1] for name in BUILTINS}
    for name, ep in sorted(_plugins().items()):
        try:
            desc = _describe(ep.load())
        except Exception as exc:  # a broken plugin must not break `bisector probes`
            desc = f"(plugin {ep.value} fails to load: {type(exc).__name__}: {exc})"
        out[name] = f"{desc} [plugin: {ep.value}]"
    return out


def _factory(probe_type: str) -> Factory:
    if probe_type in BUILTINS:
        return _builtin(probe_type)[0]
    ep = _plugins().get(probe_type)
    if ep is None:
        raise UsageError(
            f"unknown probe type {probe_type!r}: use one of {', '.join(BUILTINS)} "
            f"(or install a plugin for the `{ENTRY_POINT_GROUP}` entry-point group; `bisector probes` lists them)"
        )
    try:
        return ep.load()
    except Exception as exc:
        raise UsageError(f"probe plugin {probe_type!r} ({ep.value}) fails to import: {type(exc).__name__}: {exc}") from None


def make_probe(spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path) -> Probe:
    """Build one probe from its `[[probes]]` table; input files are read (frozen) now."""
    if not isinstance(spec, Mapping):
        raise UsageError("each [[probes]] entry must be a table with a `type`")
    probe_type = spec.get("type")
    if not probe_type or not isinstance(probe_type, str):
        raise UsageError(f"a [[probes]] table needs `type = \"...\"`: one of {', '.join(available())}")
    name = spec.get("name", probe_type)
    if not isinstance(name, str) or not name or any(c.isspace() for c in name) or "/" in name:
        raise UsageError(f"probe `name` must be a non-empty word without spaces or '/', not {name!r}")
    factory = _factory(probe_type)
    probe = factory(spec, user_cwd=Path(user_cwd), frozen_dir=Path(frozen_dir))
    for attr in ("name", "config", "run"):
        if not hasattr(probe, attr):
            raise UsageError(f"probe plugin {probe_type!r} returned an object without `{attr}`: fix the plugin")
    return probe


def make_suite(
    specs: list[Mapping[str, Any]], *, user_cwd: Path, frozen_dir: Path, stop_early: bool = True
) -> ProbeSuite:
    """All probes of a session, cheapest first; names must be unique (they key the journal)."""
    if not specs:
        raise UsageError("no probe configured: add a [[probes]] table to bisector.toml or pass --probe 'CMD'")
    probes = [make_probe(spec, user_cwd=user_cwd, frozen_dir=frozen_dir) for spec in specs]
    seen: set[str] = set()
    for p in probes:
        if p.name in seen:
            raise UsageError(f"two probes are named {p.name!r}: give each a distinct `name = \"...\"`")
        seen.add(p.name)
    return ProbeSuite(probes, stop_early)
