"""The `basic` probe: a frozen file of cases (input or prompt, expected output), a pass rate, a threshold.

Parent side: `BasicProbe` reads the cases at construction, matches outputs and decides. Child side:
`measure()` only produces the model's outputs (predict() or generate()), one subprocess per run.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.probes import adapter, stats
from bisector.probes._runner import launch, problem_observation
from bisector.probes.base import Observation, ProbeContext
from bisector.core.model import Verdict

DESCRIPTION = "pass rate on a frozen cases file (exact/contains/regex), Wilson interval, threshold"
KEYS = (
    "model", "cases", "threshold", "match", "rule", "confidence", "seed", "max_failures_shown",
    "timeout", "on_timeout", "on_error", "python",
)
MATCHES = ("exact", "contains", "regex")
RULES = ("rate", "confident")
_CASE_KEYS = {"input", "prompt", "expected", "match", "id"}
_SHOW = 200  # characters of an output kept in the evidence


def load_cases(frozen: adapter.FrozenInput, default_match: str) -> list[dict[str, Any]]:
    """Parse JSONL (one object a line), JSON (a list) or TOML (`[[cases]]` tables) and check each case."""
    text = frozen.text()
    suffix = frozen.path.suffix.lower()
    try:
        if suffix == ".toml":
            raw = tomllib.loads(text).get("cases")
            if not isinstance(raw, list):
                raise UsageError(f"{frozen.source}: a TOML cases file holds [[cases]] tables")
        elif suffix == ".json":
            raw = json.loads(text)
        else:
            raw = [json.loads(line) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("//")]
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot parse the cases file {frozen.source}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"the cases file {frozen.source} holds no cases: add one object a line")
    cases = []
    for i, case in enumerate(raw, 1):
        where = f"{frozen.source}: case {i}"
        if not isinstance(case, Mapping):
            raise UsageError(f"{where} is not an object: write {{\"input\": ..., \"expected\": ...}}")
        unknown = set(case) - _CASE_KEYS
        if unknown:
            raise UsageError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}: use {', '.join(sorted(_CASE_KEYS))}")
        if ("input" in case) == ("prompt" in case):
            raise UsageError(f"{where} needs exactly one of `input` (predict) or `prompt` (generate)")
        if "expected" not in case:
            raise UsageError(f"{where} needs `expected`")
        match = case.get("match", default_match)
        if match not in MATCHES:
            raise UsageError(f"{where}: match must be one of {', '.join(MATCHES)}, not {match!r}")
        if match == "regex":
            try:
                re.compile(str(case["expected"]))
            except re.error as exc:
                raise UsageError(f"{where}: invalid regex {case['expected']!r} ({exc})") from None
        if "prompt" in case and not isinstance(case["prompt"], str):
            raise UsageError(f"{where}: `prompt` must be a string")
        kind = "prompt" if "prompt" in case else "input"
        cases.append({"id": case.get("id", i), "kind": kind, "value": case[kind],
                      "expected": case["expected"], "match": match})
    return cases


def matches(output: Any, expected: Any, how: str) -> bool:
    """exact: JSON equality (strings compared after stripping surrounding whitespace; a non-string
    output against a string expectation is compared as str(output)); contains: substring;
    regex: re.search of `expected` in the output."""
    if how == "exact":
        if isinstance(expected, str):
            text = output if isinstance(output, str) else json.dumps(output) if isinstance(output, (list, dict)) else str(output)
            return text.strip() == expected.strip()
        if isinstance(expected, bool) or isinstance(output, bool):
            return output is expected  # True must not equal 1
        return output == expected
    text = output if isinstance(output, str) else json.dumps(output)
    if how == "contains":
        return str(expected) in text
    return re.search(str(expected), text) is not None


class BasicProbe:
    """Verdict (rule "rate"): GOOD when pass rate >= threshold, else BAD. Rule "confident": GOOD when
    the Wilson lower bound >= threshold, BAD when the upper bound < threshold, else SKIP."""

    cost = 5.0

    def __init__(self, spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path):
        t = "basic"
        # A model that does not load cannot be measured: skip, and let `sanity` call it bad.
        common = adapter.ModelProbeSpec.parse(spec, t, KEYS, user_cwd=user_cwd, frozen_dir=frozen_dir, on_error="skip")
        self.name, self.model, self.seed = common.name, common.model, common.seed
        self.timeout, self.python = common.timeout, common.python
        self.on_timeout, self.on_error = common.on_timeout, common.on_error
        self.match = adapter.get_choice(spec, "match", MATCHES, "exact", t)
        self.cases_file = adapter.freeze_input(spec.get("cases"), "cases", t, user_cwd)
        self.cases = load_cases(self.cases_file, self.match)
        self.threshold = adapter.get_number(spec, "threshold", 1.0, t, lo=0.0, hi=1.0)
        self.rule = adapter.get_choice(spec, "rule", RULES, "rate", t)
        self.confidence = adapter.get_number(spec, "confidence", 0.95, t, lo=0.5, hi=0.9999)
        self.max_shown = adapter.get_number(spec, "max_failures_shown", 10, t, lo=0, integer=True)

    def config(self) -> dict[str, Any]:
        return {
            "type": "basic", "model": self.model.config(), "cases": self.cases_file.config(),
            "n_cases": len(self.cases), "threshold": self.threshold, "match": self.match, "rule": self.rule,
            "confidence": self.confidence, "seed": self.seed, "timeout": self.timeout, "python": self.python,
            "on_timeout": self.on_timeout, "on_error": self.on_error,
        }

    def run(self, ctx: ProbeContext) -> Observation:
        timeout = self.timeout if self.timeout is not None else ctx.timeout
        params = {"cases": [{"kind": c["kind"], "value": c["value"]} for c in self.cases], "seed": self.seed}
        outcome = launch("basic", ctx=ctx, name=self.name, model=self.model.to_request(), params=params,
                         timeout=timeout, seed=self.seed, python=self.python)
        failed = problem_observation(outcome, probe=self.name, on_timeout=self.on_timeout, on_error=self.on_error)
        if failed is not None:
            return failed
        outputs = outcome.data["outputs"]
        if outputs and all("error" in o for o in outputs):
            # Nothing was measured (no predict()/generate(), or the model raises on every case).
            return Observation(
                probe=self.name, verdict=Verdict(self.on_error),
                summary=f"every case raised: {outputs[0]['error']}"[:300],
                evidence={"n": len(outputs), "error": outputs[0]["error"]},
                duration=outcome.duration, log=str(outcome.log),
            )
        return self.judge(outputs, duration=outcome.duration, log=str(outcome.log))

    def judge(self, outputs: list[dict[str, Any]], *, duration: float = 0.0, log: str | None = None) -> Observation:
        failures = []
        for case, got in zip(self.cases, outputs):
            if "error" in got:
                ok = False
            else:
                ok = matches(got.get("output"), case["expected"], case["match"])
            if not ok:
                shown = {"id": case["id"], case["kind"]: _clip(case["value"]), "expected": case["expected"],
                         "match": case["match"]}
                shown.update({"error": got["error"]} if "error" in got else {"output": _clip(got.get("output"))})
                failures.append(shown)
        n = len(self.cases)
        n_failed = len(failures)
        rate = (n - n_failed) / n
        lo, hi = stats.wilson(n - n_failed, n, self.confidence)
        if self.rule == "rate":
            verdict = Verdict.GOOD if rate >= self.threshold else Verdict.BAD
        elif lo >= self.threshold:
            verdict = Verdict.GOOD
        elif hi < self.threshold:
            verdict = Verdict.BAD
        else:
            verdict = Verdict.SKIP
        evidence = {
            "n": n, "passed": n - n_failed, "failed": n_failed, "pass_rate": rate, "ci": [lo, hi],
            "confidence": self.confidence, "threshold": self.threshold, "rule": self.rule,
            "failures": failures[: self.max_shown], "failures_shown": min(n_failed, self.max_shown),
        }
        summary = f"pass rate {rate:.1%} ({n - n_failed}/{n}, {self.confidence:.0%} CI {lo:.2f}-{hi:.2f}) vs threshold {self.threshold:g}"
        if verdict is Verdict.SKIP:
            summary += ": inconclusive, add cases"
        return Observation(probe=self.name, verdict=verdict, summary=summary, evidence=evidence,
                           duration=duration, log=log, counts=(n_failed, n))


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _SHOW:
        return value[:_SHOW] + "..."
    return value


# ---------------------------------------------------------------- child side


def measure(model: Any, params: dict[str, Any], workspace: Path) -> dict[str, Any]:
    """The model's output for each case; a case whose call raises records the error instead."""
    seed = int(params.get("seed", 0))
    outputs = []
    for case in params["cases"]:
        try:
            if case["kind"] == "prompt":
                if not callable(getattr(model, "generate", None)):
                    raise TypeError("the model offers no generate(prompt) for a `prompt` case")
                out = adapter.call_generate(model, case["value"], seed)
                outputs.append({"output": out[:10000]})
            else:
                if not callable(getattr(model, "predict", None)):
                    raise TypeError("the model offers no predict(input) for an `input` case")
                adapter.seed_all(seed)
                outputs.append({"output": adapter.to_jsonable(model.predict(case["value"]))})
        except Exception as exc:
            outputs.append({"error": adapter.describe_exception(exc)["error"][:300]})
    return {"outputs": outputs}
