"""What the bounds policy of the loop knows (`core/loop.py`): when a bound or a parent needs no
probe of its own (a verdict the search's observations imply), and the one-line messages of a
bound that is not what it was said to be. Pure: the candidates' parents and the verdicts seen."""

from __future__ import annotations

from typing import Mapping

from bisector.core.model import Role, Step, Verdict

BOUND_NAME = {Role.BAD_BOUND: "bad bound", Role.GOOD_BOUND: "good bound", Role.MERGE_BASE: "merge base"}


def implied_good(parents: Mapping[str, tuple[str, ...]], observed: Mapping[str, Verdict], key: str) -> bool:
    """Whether `key` is an ancestor of a commit observed good (so good, the search being monotone)."""
    stack = [k for k, v in observed.items() if v is Verdict.GOOD and k != key]
    seen = set(stack)
    while stack:
        for q in parents.get(stack.pop(), ()):
            if q == key:
                return True
            if q not in seen:
                seen.add(q)
                stack.append(q)
    return False


def implied_bad(parents: Mapping[str, tuple[str, ...]], observed: Mapping[str, Verdict]) -> bool:
    """Whether the bad bound is implied bad: a candidate (each one its ancestor) was observed bad."""
    return any(v is Verdict.BAD for k, v in observed.items() if k in parents)


def bound_error(step: Step, role: Role) -> str:
    """Why the search cannot go on: the bound at `step` is not what it was said to be."""
    if step.verdict is Verdict.SKIP and step.result.build.status == "no-data":
        fix = ("its DVC data is missing (see the step's note): get it (`dvc fetch`), or run with "
               "--no-data if the question needs no data")
    elif step.verdict is Verdict.SKIP:
        fix = "fix the build or probe for that commit, or pick another bound"
    elif role is Role.BAD_BOUND:
        fix = "it is not broken for this probe: pick a broken --bad or check the probe"
    elif role is Role.GOOD_BOUND:
        fix = "pick an older good revision or check the probe"
    else:
        fix = "the regression is older than the fork point of the good revision: pick an older good revision"
    return f"the {BOUND_NAME[role]} {step.key[:10]} is {step.verdict.value} ({step.result.summary()}): {fix}"

def abort_message(step: Step) -> str:
    """Why the search stopped at an aborted step, with the last lines of the log."""
    tail = next((str(o.evidence.get("log_tail", "")) for o in step.result.observations if o.verdict is Verdict.ABORT), "")
    build = step.result.build
    if not step.result.observations and not build.ok:
        msg = f"the build {build.status} at {step.commit[:10]} (step {step.number}) and build.on_failure is abort"
        tail = build.tail
    else:
        msg = f"the probe aborted at {step.commit[:10]} (step {step.number}); the search stopped"
    if tail:
        msg += ". Log tail: " + " | ".join(tail.splitlines()[-3:])
    return msg
