"""The `metric` probe: read a metrics file the build wrote and test a condition on it.

Runs in-process (no user code, no torch): it only reads JSON / YAML / TOML files of the
workspace. Default files: the DVC metrics declared in the workspace's `dvc.yaml` (top-level
`metrics:` and each stage's `metrics:` outputs, relative to the stage's `wdir`).
"""

from __future__ import annotations

import dataclasses

import json
import math
import operator
import re
import time
import tomllib
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.probes import adapter
from bisector.probes._runner import json_safe
from bisector.probes.base import Observation, ProbeContext
from bisector.core.model import Verdict

DESCRIPTION = "a condition on a metrics file of the build (default: dvc.yaml metrics), absolute or vs the good bound"
# `timeout` is accepted and ignored: `--timeout` is set on every probe spec, and reading a file is instant.
KEYS = ("condition", "file", "baseline", "on_missing", "timeout")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq, "!=": operator.ne}
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_COND = re.compile(r"^\s*(?P<name>[A-Za-z_][\w.\-/]*)\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<rhs>.+?)\s*$")
_RHS = re.compile(rf"^(?:(?P<num>{_NUM})|good(?:\s*(?P<aop>[-+*/])\s*(?P<anum>{_NUM}))?)$")
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


class Condition:
    """`name OP number` or `name OP good [+-*/ number]` (`good`: the metric at the good bound)."""

    def __init__(self, text: str):
        m = _COND.match(text) if isinstance(text, str) else None
        rhs = _RHS.match(m["rhs"]) if m else None
        if not m or not rhs:
            raise UsageError(
                f"cannot parse the metric condition {text!r}: write `accuracy >= 0.9` or `accuracy >= good - 0.02`"
            )
        self.text = text.strip()
        self.name = m["name"]
        self.op = m["op"]
        self.number = float(rhs["num"]) if rhs["num"] is not None else None
        self.arith = (rhs["aop"], float(rhs["anum"])) if rhs["aop"] else None
        self.relative = self.number is None

    def limit(self, good: float | None) -> float | None:
        if not self.relative:
            return self.number
        if good is None:
            return None
        if self.arith is None:
            return good
        aop, num = self.arith
        return _ARITH[aop](good, num)

    def holds(self, value: float, limit: float) -> bool:
        return bool(_OPS[self.op](value, limit))


def read_metrics_file(path: Path) -> Any:
    """Parse by extension: .json, .yaml/.yml, .toml; anything else is tried as JSON then YAML."""
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return tomllib.loads(text)
    if suffix == ".json":
        return json.loads(text)
    if suffix not in (".yaml", ".yml"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    import yaml  # lazily: PyYAML comes with DVC

    return yaml.safe_load(text)


def dvc_metrics_files(workspace: Path) -> list[str]:
    """Metrics paths declared in the workspace's dvc.yaml, relative to the workspace."""
    dvc_yaml = workspace / "dvc.yaml"
    if not dvc_yaml.is_file():
        return []
    try:
        doc = read_metrics_file(dvc_yaml)
    except Exception:  # an unparsable dvc.yaml declares nothing we can use
        return []
    if not isinstance(doc, Mapping):
        return []
    paths: list[str] = []

    def add(entries: Any, wdir: str = ".") -> None:
        for entry in entries or []:
            names = [entry] if isinstance(entry, str) else list(entry) if isinstance(entry, Mapping) else []
            for name in names:
                p = str(Path(wdir) / name) if wdir not in (".", "") else str(name)
                if p not in paths:
                    paths.append(p)

    add(doc.get("metrics"))
    for stage in (doc.get("stages") or {}).values():
        if isinstance(stage, Mapping):
            add(stage.get("metrics"), str(stage.get("wdir", ".")))
    return paths


def lookup(doc: Any, name: str) -> Any:
    """A dotted path into nested mappings (`eval.accuracy`); a key holding dots wins if present."""
    if not isinstance(doc, Mapping):
        return None
    if name in doc:
        return doc[name]
    parts = name.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if head in doc:
            found = lookup(doc[head], ".".join(parts[i:]))
            if found is not None:
                return found
    return None


class MetricProbe:
    """Verdict: GOOD when every condition holds, BAD when one fails, SKIP (or `on_missing`) when a
    metric or file is missing or not a number, or a relative condition has no baseline yet."""

    cost = 0.1

    def __init__(self, spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path):
        t = "metric"
        adapter.check_keys(spec, KEYS, t)
        self.name = spec.get("name", t)
        cond = spec.get("condition")
        texts = [cond] if isinstance(cond, str) else cond
        if not texts or not isinstance(texts, list):
            raise UsageError("a `metric` probe needs `condition = \"accuracy >= 0.9\"` (or a list of them)")
        self.conditions = [Condition(c) for c in texts]
        files = spec.get("file")
        files = [files] if isinstance(files, str) else files
        if files is not None and (not isinstance(files, list) or not all(isinstance(f, str) for f in files)):
            raise UsageError("`file` of a `metric` probe must be a path (or a list) relative to the workspace")
        self.files = files
        self.on_missing = adapter.get_on_problem(spec, "on_missing", "skip", t)
        self.baseline: dict[str, float] | None = None
        if "baseline" in spec:
            self.baseline = self._baseline_from(spec["baseline"])

    def _baseline_from(self, value: Any) -> dict[str, float]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            names = {c.name for c in self.conditions if c.relative}
            if len(names) != 1:
                raise UsageError("a number as `baseline` needs exactly one relative condition: use {metric = value}")
            return {names.pop(): float(value)}
        if isinstance(value, Mapping) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            return {str(k): float(v) for k, v in value.items()}
        raise UsageError("`baseline` of a `metric` probe must be a number or a table {accuracy = 0.93}")

    @property
    def needs_baseline(self) -> bool:
        return any(c.relative and (self.baseline is None or c.name not in self.baseline) for c in self.conditions)

    def set_baseline(self, observation: Observation) -> None:
        """Take the metric values of the good bound's observation of this probe as `good`."""
        values = observation.evidence.get("values") or {}
        numbers = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not numbers:
            raise UsageError(f"probe `{self.name}`: the good bound's observation holds no metric values ({observation.summary})")
        self.baseline = {**(self.baseline or {}), **numbers}

    def config(self) -> dict[str, Any]:
        return {"type": "metric", "condition": [c.text for c in self.conditions], "file": self.files,
                "baseline": self.baseline, "on_missing": self.on_missing}

    def run(self, ctx: ProbeContext) -> Observation:
        start = time.monotonic()
        obs = self._measure(Path(ctx.workspace))
        return dataclasses.replace(obs, duration=time.monotonic() - start)

    def _measure(self, workspace: Path) -> Observation:
        files = self.files if self.files is not None else dvc_metrics_files(workspace)
        if not files:
            return self._missing("no metrics file: set `file = \"metrics.json\"` or declare `metrics:` in dvc.yaml", {})
        docs: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for f in files:
            path = workspace / f
            if not path.is_file():
                problems[f] = "missing"
                continue
            try:
                docs[f] = read_metrics_file(path)
            except Exception as exc:  # any parser's error: the file is unreadable at this commit
                problems[f] = f"unreadable: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for cond in self.conditions:
            for f, doc in docs.items():
                v = lookup(doc, cond.name)
                if v is not None:
                    values[cond.name], sources[cond.name] = v, f
                    break
        evidence: dict[str, Any] = {"files": files, "values": values, "sources": sources}
        if problems:
            evidence["file_problems"] = problems
        results = []
        for cond in self.conditions:
            v = values.get(cond.name)
            if v is None:
                where = ", ".join(f"{f} ({p})" for f, p in problems.items()) or ", ".join(files)
                return self._missing(f"metric `{cond.name}` not found in {where}", evidence)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return self._missing(f"metric `{cond.name}` is not a number: {v!r}", evidence)
            if not math.isfinite(v):
                # NaN / inf: the training diverged at this commit; no condition holds for it.
                values[cond.name] = json_safe(v)
                results.append({"metric": cond.name, "op": cond.op, "condition": cond.text, "value": json_safe(v),
                                "limit": None, "holds": False})
                continue
            limit = cond.limit((self.baseline or {}).get(cond.name))
            if limit is None:
                evidence["baseline"] = None
                return Observation(probe=self.name, verdict=Verdict.SKIP,
                                   summary=f"{cond.name} = {v:g}: no baseline yet for `{cond.text}`", evidence=evidence)
            results.append({"metric": cond.name, "op": cond.op, "condition": cond.text, "value": v, "limit": limit, "holds": cond.holds(v, limit)})
        evidence["results"] = results
        if self.baseline:
            evidence["baseline"] = self.baseline
        failed = [r for r in results if not r["holds"]]
        summary = "; ".join(
            f"{r['metric']} = {r['value']} is not finite" if r["limit"] is None else
            f"{r['metric']} = {r['value']:g} {'meets' if r['holds'] else 'fails'} {r['op']} {r['limit']:g}"
            for r in (failed or results)
        )
        return Observation(probe=self.name, verdict=Verdict.BAD if failed else Verdict.GOOD,
                           summary=summary, evidence=evidence)

    def _missing(self, summary: str, evidence: dict[str, Any]) -> Observation:
        return Observation(probe=self.name, verdict=Verdict(self.on_missing), summary=summary, evidence=evidence)
