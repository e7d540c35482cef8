"""The words every view shares: role labels, durations, revisions, a step's summary, the attribution."""

from __future__ import annotations

import click

from bisector.core.model import Attribution, BuildInfo, Step, Verdict
from bisector.journal.codec import CROSSINGS

ROLE_LABEL = {
    "bad-bound": "check bad",
    "good-bound": "check good",
    "merge-base": "check merge base",
    "search": "",
    "confirm": "confirm",
    "calibrate": "calibrate",
}
CROSSING_LABEL = dict(zip(CROSSINGS, ("the parent's code with the culprit's data",
                                      "the culprit's code with the parent's data")))


def warn(message: str) -> None:
    click.echo(f"Warning: {message}", err=True)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def role_label(step: Step) -> str:
    return ROLE_LABEL.get(step.role.value, step.role.value) or "search"


def rev_label(commit: str, data_rev: str | None) -> str:
    if data_rev and data_rev != commit:
        return f"{commit[:10]} (data {data_rev[:10]})"
    return commit[:10]


def step_summary(step: Step) -> str:
    """A failed build, or each probe's summary (with its own verdict when a suite ran several)."""
    build = step.result.build
    if not build.ok:
        return f"build {build.status}"
    obs = step.result.observations
    if len(obs) > 1:
        return "; ".join(f"{o.probe} {o.verdict.value}: {o.summary}" for o in obs)
    return "; ".join(f"{o.probe}: {o.summary}" for o in obs) or "-"


def build_cell(build: BuildInfo) -> str:
    if build.status == "none":
        return "-"
    if build.status == "ok":
        return duration(build.duration)
    return build.status


def attribution_sentence(att: Attribution) -> str:
    """What the attribution says, in one line: "Culprit is the DATA (...)", and how it was found."""
    crossings = "; ".join(f"{CROSSING_LABEL.get(k, k.replace('_', ' '))} is {v.value}" for k, v in att.crossings.items())
    how = att.how or (f"tested crossings: {crossings}" if att.tested and crossings else "")
    if att.culprit_is in ("code", "data", "environment"):
        if not how:
            how = f"only the {att.culprit_is} changed in this commit" if not att.tested else "crossings tested"
        return f"Culprit is the {att.culprit_is.upper()} ({how})"
    if att.culprit_is == "both":
        verdicts = set(att.crossings.values())
        if verdicts == {Verdict.BAD}:
            what = "each of them alone breaks it"
        elif verdicts == {Verdict.GOOD}:
            what = "only the two together break it"
        else:
            what = "both changed"
        return f"Culprit is the CODE and the DATA: {what}" + (f" ({how})" if how else "")
    why = att.why or ("a crossing could not be judged" if att.tested else "")
    return "Culprit is the code or the data: unknown" + (f" ({why}{'; ' + how if how else ''})" if why or how else "")
