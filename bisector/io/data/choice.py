"""Whether a run materializes DVC data at all, and the lines that tell the user what was chosen.

Data costs a checkout per step and, without the data at hand, a fetch from a remote that may
not answer; a question about code or params needs none of it. The choice is made once, when
the session starts, and recorded in the start event (`data`), so resume and replay agree.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from bisector.io.data.dvccli import own_dvc_fallback

BUILD_OFF = ("", "true", ":")  # build commands that do nothing


def reads_data(spec: Mapping[str, Any]) -> bool:
    """Whether a probe may read DVC-tracked paths. A probe says it does not with
    `reads_data = false`; otherwise it is assumed to (the metric probe always does)."""
    if spec.get("type", "command") == "command" and "reads_data" in spec:
        return bool(spec["reads_data"])
    return True


def choose_materialize(
    *, is_dvc: bool, asked: bool | None, configured: bool | None, build_command: str | None,
    has_pipeline: bool, specs: Sequence[Mapping[str, Any]],
) -> tuple[bool, str]:
    """(materialize, why): `--no-data`/`--data` over `[dvc] materialize`, else automatic: no data
    when the build is off and no probe reads DVC-tracked paths."""
    if not is_dvc:
        return False, "no DVC in this repository"
    if asked is not None:
        return asked, "--data" if asked else "--no-data"
    if configured is not None:
        return configured, f"[dvc] materialize = {str(configured).lower()}"
    command = build_command if build_command is not None else ("dvc repro" if has_pipeline else "")
    if command.strip() not in BUILD_OFF:
        return True, f"the build `{command}` may read it"
    readers = [s for s in specs if reads_data(s)]
    if readers:
        kind = readers[0].get("type", "command")
        why = "says it reads it" if kind != "command" else "may read it (declare `reads_data = false` if not)"
        return True, f"the {kind} probe {why}"
    return False, "no build and no probe reads DVC-tracked paths"


def describe(start: Mapping[str, Any]) -> list[str]:
    """The run's first lines after the bounds: data, offline, bounds policy, probe script."""
    out = []
    data = start.get("data")
    if isinstance(data, Mapping) and data.get("why") != "no DVC in this repository":
        if data.get("materialize"):
            mode = "offline, the remote is never asked" if data.get("offline") else "fetched when missing"
            out.append(f"Data: DVC data checked out each step ({mode}): {data.get('why')}")
            own = own_dvc_fallback(os.environ.get("PATH", ""))
            if own:
                out.append(f"DVC: no `dvc` on your PATH: builds use bisector's own ({own})")
        else:
            out.append(f"Data: none materialized (plain worktree steps): {data.get('why')}")
    bounds = start.get("bounds")
    if bounds == "trust":
        out.append("Bounds: trusted (--trust-bounds): neither bound is probed")
    elif bounds == "lazy" and start.get("overlap"):
        bad = ("checked with the search's first step" if int(start.get("jobs") or 1) > 1
               else "probed only if no tested commit is bad (a bad one implies it)")
        out.append(f"Bounds: the bad bound is {bad}; the good bound only if the answer depends on it")
    elif bounds == "lazy":
        out.append("Bounds: the bad bound is checked first; the good bound only if the answer depends on it")
    for sha, pinned in (start.get("pinned_bounds") or {}).items():
        if isinstance(pinned, Mapping):
            what = "checked" if pinned.get("probed") else "not probed"
            out.append(f"Good bound {str(sha)[:10]}: {what} ({pinned.get('why')})")
    probe_from = start.get("probe_from")
    if probe_from == "commit":
        out.append("Probe script: each commit's own copy (--probe-from commit)")
    elif probe_from == "frozen":
        out.append("Probe script: today's copy, frozen and placed at its own path in each step's worktree")
    return out
