"""The public Python API; the command line is a thin layer over it (docs/api.md).

    import bisector

    result = bisector.bisect(good="v1.0", bad="main", probe="./check.sh", repo="path/to/repo")
    if result.status is bisector.Status.FOUND:
        print(result.culprit, result.attribution)

Everything here is also reachable as `bisector.NAME` (imported on first use, so `import bisector`
stays light). Results are typed objects: `SessionResult` (with the `Outcome`), `SessionSummary`
(a journal, read: its `Step`s and `Outcome`), `Verdict`, `Status`, `Attribution`. Errors are
`BisectorError`s (`UsageError` for a wrong input, with the CLI's one-line message).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from bisector.core.errors import BisectorError, UsageError
from bisector.core.model import Attribution, Axis, Observation, Outcome, Role, Status, Step, Verdict
from bisector.io.git import repo_root
from bisector.io.scaffold import Detected, write_config
from bisector.journal.read import SessionSummary, find_session
from bisector.review.html import write_html
from bisector.review.pins.bounds import expand_bounds
from bisector.review.report import write_report
from bisector.run.session import Handler, RunOptions, Session, SessionResult

__all__ = [
    "Attribution", "Axis", "BisectorError", "Detected", "Handler", "Observation", "Outcome", "Report", "Role",
    "RunOptions", "Session", "SessionResult", "SessionSummary", "Status", "Step", "UsageError", "Verdict",
    "bisect", "init", "load_session", "report",
]

_OPTION_NAMES = {f.name for f in fields(RunOptions)}


def bisect(good: str | Sequence[str] | None = None, bad: str | None = None, probe: str | None = None, *,
           repo: str | Path = ".", handler: Handler | None = None, **options: Any) -> SessionResult:
    """Bisect between `good` (one revision or several) and `bad` with `probe`, in `repo`.

    `options` are `RunOptions`' fields, as the `bisector run` flags: `build`, `probe_timeout`,
    `paths`, `first_parent`, `jobs`, `noise`, `axis`, `data_rev`, ... Missing ones come from the
    repository's bisector.toml, as on the command line. `@NAME` revisions are pins, as on the
    command line: a pin verified good with the same probe and build is not probed again, and with
    a `bad` but no `good` the most recent pin before it is the good bound. With no `good` and
    `bad`, the unfinished session is resumed. The probe's script is frozen from `repo` (as
    `bisector -C REPO run`). Returns the typed result; raises `BisectorError` on a wrong input.
    """
    unknown = sorted(set(options) - _OPTION_NAMES - {"repo", "goods", "bad", "probe"})
    if unknown:
        raise UsageError(f"unknown option {unknown[0]!r} for bisector.bisect: use one of {', '.join(sorted(_OPTION_NAMES))}")
    root = repo_root(Path(repo))
    goods = [good] if isinstance(good, str) else list(good or [])
    opts = RunOptions(repo=root, bad=bad, goods=goods, probe=probe, **options)
    pinned = expand_bounds(root, opts.goods, opts.bad, opts.code_rev, opts.data_rev)
    opts.goods, opts.bad, opts.code_rev, opts.data_rev = pinned.goods, pinned.bad, pinned.code_rev, pinned.data_rev
    opts.pinned_goods = {**pinned.pinned_goods, **opts.pinned_goods}
    if pinned.chosen is not None and handler is not None:
        handler.on_message(f"No good given: using pin @{pinned.chosen.name} ({pinned.chosen.commit[:10]}), "
                           "the most recent pin before the bad revision")
    with contextlib.chdir(Path(repo).resolve()):
        return Session(opts, handler).run()


def init(repo: str | Path = ".", *, force: bool = False) -> tuple[Path, Detected]:
    """Write a commented bisector.toml for `repo` (what `bisector init` does); returns its path and
    what was detected. Raises UsageError when the file exists and `force` is false."""
    return write_config(Path(repo), force=force)


@dataclass(frozen=True)
class Report:
    path: Path
    plot: Path | None = None  # Markdown: the PNG next to it (None: matplotlib missing, or HTML: inline)


def report(repo: str | Path = ".", session: str | None = None, output: str | Path = "report.md", *,
           html: bool = False) -> Report:
    """Write the report of `session` (default: the latest): Markdown with a PNG plot next to it,
    or with `html=True` one self-contained HTML file."""
    if html:
        return Report(write_html(Path(repo), session, output))
    r = write_report(Path(repo), session, output)
    return Report(r.path, r.plot)


def load_session(repo: str | Path = ".", session: str | None = None) -> SessionSummary:
    """A session's journal (default: the latest), read into typed steps and outcome."""
    return find_session(repo_root(Path(repo)), session)
