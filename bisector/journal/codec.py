"""The journal's key names: the one place that turns the typed model into events and back.

Events are JSON objects, one per line (`v`, `ts` and `event` are added by the writer). The
schema version stays 1: journals of every earlier bisector decode here, so decoding is
tolerant (missing optional keys take their defaults) and encoding omits empty fields.
A field of the wrong type is a `JournalError` naming the field.
"""

from __future__ import annotations

from typing import Any, Mapping

from bisector.core.errors import JournalError
from bisector.core.model import (
    Attribution,
    BuildInfo,
    Observation,
    Outcome,
    Point,
    Role,
    Status,
    Step,
    StepRequest,
    StepResult,
    Verdict,
)

# Attribution: the journal's names of the two crossings.
CROSSINGS = ("parent_code_culprit_data", "culprit_code_parent_data", "culprit_code_parent_env")


def _enum(kind: type, value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise JournalError(f"unknown {what} {value!r} in a journal event") from None


# ------------------------------------------------------------------ observations
def encode_observation(o: Observation) -> dict[str, Any]:
    d: dict[str, Any] = {
        "probe": o.probe,
        "verdict": o.verdict.value,
        "summary": o.summary,
        "evidence": dict(o.evidence),
        "duration": o.duration,
        "log": o.log,
        "counts": list(o.counts) if o.counts is not None else None,
    }
    return d


def decode_observation(d: Mapping[str, Any]) -> Observation:
    counts = d.get("counts")
    return Observation(
        probe=str(d.get("probe", "?")),
        verdict=_enum(Verdict, d.get("verdict"), "verdict"),
        summary=d.get("summary") or "",
        evidence=dict(d.get("evidence") or {}),
        duration=float(d.get("duration") or 0.0),
        log=d.get("log"),
        counts=(int(counts[0]), int(counts[1])) if counts is not None else None,
    )


# ------------------------------------------------------------------------ builds
def encode_build(b: BuildInfo) -> dict[str, Any]:
    """As builds were always journaled: status and duration, then whatever is set (the log
    tail only when the build did not succeed)."""
    d: dict[str, Any] = {"status": b.status, "duration": round(b.duration, 3)}
    if b.returncode is not None:
        d["returncode"] = b.returncode
    if b.log is not None:
        d["log"] = b.log
    if b.tail and not b.ok:
        d["tail"] = b.tail
    if b.key is not None:
        d["key"] = b.key
    if b.outputs is not None:
        d["outputs"] = list(b.outputs)
    if b.cause:
        d["cause"] = b.cause
    if b.data is not None:
        d["data"] = dict(b.data)
    return d


def decode_build(d: Mapping[str, Any] | None) -> BuildInfo:
    d = d or {}
    outputs = d.get("outputs")
    return BuildInfo(
        status=str(d.get("status", "none")),
        duration=float(d.get("duration") or 0.0),
        returncode=d.get("returncode"),
        log=d.get("log"),
        tail=d.get("tail") or "",
        key=d.get("key"),
        outputs=tuple(outputs) if outputs is not None else None,
        cause=d.get("cause") or "",
        data=d.get("data"),
    )


# ------------------------------------------------------------------------- steps
def encode_result(r: StepResult) -> dict[str, Any]:
    """A step's result as the step event holds it (also the wire format of remote workers)."""
    return {
        "verdict": r.verdict.value,
        "build": encode_build(r.build),
        "observations": [encode_observation(o) for o in r.observations],
        "duration": round(r.duration, 3),
        "worker": r.worker,
        "notes": list(r.notes),
    }


def decode_result(e: Mapping[str, Any]) -> StepResult:
    return StepResult(
        verdict=_enum(Verdict, e.get("verdict"), "verdict"),
        build=decode_build(e.get("build")),
        observations=tuple(decode_observation(o) for o in e.get("observations") or ()),
        duration=float(e.get("duration") or 0.0),
        worker=e.get("worker") or "",
        notes=tuple(e.get("notes") or ()),
    )


def encode_step(s: Step) -> dict[str, Any]:
    """The fields of a `step` event."""
    d: dict[str, Any] = {
        "step": s.request.step,
        "role": s.request.role.value,
        "commit": s.request.point.code,
        **encode_result(s.result),
        "data_rev": s.request.point.data,
        "round": s.round,
    }
    if s.request.point.env is not None:
        d["env_rev"] = s.request.point.env
    if s.request.run != 1:
        d["run"] = s.request.run
    if s.reused_from is not None:
        d["reused_from"] = s.reused_from
    return d


def decode_step(e: Mapping[str, Any], axis: str = "code") -> Step:
    """A `step` event. `axis` names the search's key: the commit, or on the data axis the
    data revision (crossings keep the commit)."""
    try:
        commit = str(e["commit"])
        number = int(e["step"])
    except (KeyError, TypeError, ValueError):
        raise JournalError("a step event without a step number or commit") from None
    role = _enum(Role, e.get("role", "search"), "step role")
    data = e.get("data_rev")
    key = (data or commit) if axis == "data" and role is not Role.CROSSING else commit
    request = StepRequest(number, Point(key, commit, data, e.get("env_rev")), role, run=int(e.get("run", 1)))
    return Step(request, decode_result(e), round=int(e.get("round") or 0), reused_from=e.get("reused_from"))


# ---------------------------------------------------------------- marks by hand
def encode_mark(mark: str, rev: str, verdict: Verdict) -> dict[str, Any]:
    """A `mark` event: `bisector good/bad/skip REV` sent to a running session, which journals
    it as a step (the step's hand observation names the mark's id)."""
    return {"id": mark, "rev": rev, "verdict": verdict.value}


def decode_mark(e: Mapping[str, Any]) -> tuple[str, str, Verdict]:
    try:
        return str(e["id"]), str(e["rev"]), _enum(Verdict, e.get("verdict"), "verdict")
    except KeyError:
        raise JournalError("a mark event without an id or revision") from None


def mark_of(step: Step) -> str | None:
    """The id of the mark a step answers, if any."""
    return next((str(o.evidence["mark"]) for o in step.result.observations if o.evidence.get("mark")), None)


# ------------------------------------------------------------------- the result
def encode_attribution(a: Attribution | None) -> dict[str, Any] | None:
    if a is None:
        return None
    d: dict[str, Any] = {"culprit_is": a.culprit_is, "changed": dict(a.changed), "tested": a.tested}
    d.update({name: v.value for name, v in a.crossings.items()})
    if a.why:
        d["why"] = a.why
    if a.how:
        d["how"] = a.how
    return d


def decode_attribution(d: Mapping[str, Any] | None) -> Attribution | None:
    if not d:
        return None
    crossings = {n: _enum(Verdict, d[n], "verdict") for n in CROSSINGS if d.get(n) is not None}
    return Attribution(
        culprit_is=str(d.get("culprit_is", "unknown")),
        changed=dict(d.get("changed") or {}),
        tested=bool(d.get("tested", False)),
        crossings=crossings,
        why=d.get("why") or "",
        how=d.get("how") or "",
    )


def encode_outcome(o: Outcome) -> dict[str, Any]:
    """The result fields of an `end` event (the session adds steps, elapsed and rounds)."""
    return {
        "status": o.status.value,
        "culprit": o.culprit,
        "probability": o.probability,
        "candidates": list(o.candidates),
        "message": o.message,
        "attribution": encode_attribution(o.attribution),
    }


def decode_outcome(e: Mapping[str, Any]) -> Outcome:
    return Outcome(
        status=_enum(Status, e.get("status"), "status"),
        culprit=e.get("culprit"),
        probability=float(e.get("probability") or 0.0),
        candidates=tuple(e.get("candidates") or ()),
        message=e.get("message") or "",
        attribution=decode_attribution(e.get("attribution")),
    )


def trusted_bounds(start: Mapping[str, Any]) -> list[str]:
    """The good bounds the start event's `pinned_bounds` says are not probed (a pin verified them)."""
    pinned = start.get("pinned_bounds") or {}
    return [sha for sha, v in pinned.items() if isinstance(v, Mapping) and v.get("probed") is False]
