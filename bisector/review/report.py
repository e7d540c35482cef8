"""Reviewing journals: the `sessions` table and a Markdown report a reviewer can check step by step.

The report states the question (bounds, axis, probes, frozen config), the answer (culprit,
probability, attribution, diff stats), the evidence (every step with its numbers, and a plot when
matplotlib is installed), the environment and the commands that reproduce the search.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from bisector.journal.writer import SessionSummary

# Evidence keys that hold a probe's main number, most specific first.
MAIN_KEYS = ("value", "rate", "pass_rate", "accuracy", "score", "loss")
PLOT_HINT = "pip install 'bisector[plot]'"
ROLES = {"bad-bound": "check bad", "good-bound": "check good", "merge-base": "check merge base",
         "search": "search", "confirm": "confirm"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def main_number(observation: Mapping[str, Any]) -> tuple[str, float] | None:
    """(name, value) of an observation's main number: value/rate/pass_rate/accuracy, a metric, or the exit code."""
    ev = observation.get("evidence") or {}
    for k in MAIN_KEYS:
        if _number(ev.get(k)):
            return k, float(ev[k])
    results = ev.get("results")
    if isinstance(results, list) and results and isinstance(results[0], Mapping) and _number(results[0].get("value")):
        return str(results[0].get("metric", "value")), float(results[0]["value"])
    values = ev.get("values")
    if isinstance(values, Mapping):
        for k, v in values.items():
            if _number(v):
                return str(k), float(v)
    for k in ("exit_code", "returncode"):
        if _number(ev.get(k)):
            return k, float(ev[k])
    return None


def _utc(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts else "?"


def probe_names(s: SessionSummary) -> list[str]:
    probes = s.start.get("config", {}).get("probes", {}).get("probes", [])
    return [str(p.get("name", p.get("type", "?"))) for p in probes] or ["?"]


def status_of(s: SessionSummary) -> str:
    return s.end["status"] if s.end else "unfinished"


# ---------------------------------------------------------------- sessions table
def session_rows(repo: Path) -> list[dict[str, Any]]:
    from bisector.journal.writer import list_journals, summarize
    from bisector.core.errors import JournalError
    from bisector.review.render import warn

    rows = []
    for path in list_journals(repo):
        try:
            s = summarize(path, warn)
        except JournalError as exc:
            rows.append({"session": path.stem, "started": "?", "bounds": "", "probe": "", "steps": "",
                         "status": "unreadable", "culprit": str(exc)[:60]})
            continue
        goods = ",".join(g[:7] for g in s.start.get("goods", []))
        culprit = (s.end or {}).get("culprit") or ""
        rows.append({
            "session": s.id,
            "started": _utc(s.start.get("ts")),
            "bounds": f"{goods}..{s.start.get('bad', '')[:7]}",
            "probe": "+".join(probe_names(s)),
            "steps": len(s.steps),
            "status": status_of(s),
            "culprit": culprit[:10],
        })
    return rows


def render_sessions(repo_path: Path) -> str:
    from tabulate import tabulate

    from bisector.io.git import repo_root

    rows = session_rows(repo_root(repo_path))
    if not rows:
        return "No sessions yet: start one with `bisector run --good REV --bad REV --probe CMD`."
    return tabulate(rows, headers="keys", tablefmt="simple")


# ------------------------------------------------------------------------ plot
def candidate_order(repo: Path, s: SessionSummary) -> list[str]:
    """The candidates oldest first (the x axis of the plot), from git."""
    from bisector.io.git import git

    args = ["rev-list", "--topo-order", "--reverse"]
    if s.start.get("first_parent"):
        args.append("--first-parent")
    args += [s.start["bad"], "--not", *s.start.get("goods", []), "--"]
    return git(repo, *args).split()


def plot_session(repo: Path, s: SessionSummary, png: Path) -> bool:
    """Each probe's main number along the candidate order; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    order = candidate_order(repo, s)
    pos = {sha: i for i, sha in enumerate(order)}
    series: dict[str, dict[str, list[Any]]] = {}
    for e in s.steps:
        x = pos.get(e["commit"], -1)  # good bounds and merge bases sit just before the first candidate
        for o in e.get("observations", []):
            m = main_number(o)
            if m is None:
                continue
            d = series.setdefault(o["probe"], {"x": [], "y": [], "c": [], "label": m[0]})
            d["x"].append(x)
            d["y"].append(m[1])
            d["c"].append({"good": "tab:green", "bad": "tab:red"}.get(o.get("verdict"), "tab:gray"))
    n = max(1, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.6 * n), squeeze=False)
    culprit = (s.end or {}).get("culprit")
    for ax, (name, d) in zip(axes[:, 0], sorted(series.items()) or [("(no numbers)", None)]):
        if d:
            ax.scatter(d["x"], d["y"], c=d["c"], zorder=3)
            ax.set_ylabel(d["label"])
        ax.set_title(f"probe {name}", fontsize=10)
        ax.axvline(-1, color="tab:green", linestyle=":", label="good bound")
        ax.axvline(len(order) - 1, color="tab:red", linestyle=":", label="bad bound")
        if culprit in pos:
            ax.axvline(pos[culprit], color="black", linestyle="--", label=f"culprit {culprit[:7]}")
        ax.set_xlim(-2, max(len(order), 1))
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("candidate (oldest to newest)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------- report
def _code(text: str, lang: str = "") -> str:
    return f"```{lang}\n{text.rstrip()}\n```"


def _computed_diff(repo: Path, key: str, parent: str, culprit: str) -> Any:
    if not parent:
        return None
    from bisector.io.data.history import data_diff, params_diff

    if key == "data_diff":
        return [{"path": c.path, "change": c.status, "before": c.old_hash, "after": c.new_hash}
                for c in data_diff(repo, parent, culprit)]
    return {k: list(v) for k, v in params_diff(repo, parent, culprit).items()}


def _table(value: Any) -> list[str]:
    """A Markdown table of a diff: a list of rows (dicts), {key: [before, after]}, or {"before", "after"}."""
    if isinstance(value, Mapping) and set(value) == {"before", "after"}:
        b, a = value["before"] or {}, value["after"] or {}
        value = {k: [b.get(k), a.get(k)] for k in sorted(set(b) | set(a)) if b.get(k) != a.get(k)}
    if isinstance(value, Mapping):
        value = [{"key": k, "before": v[0], "after": v[1]} if isinstance(v, (list, tuple)) and len(v) == 2
                 else {"key": k, "value": v} for k, v in value.items()]
    if not isinstance(value, list) or not value or not all(isinstance(r, Mapping) for r in value):
        return []
    cols = list(dict.fromkeys(k for r in value for k in r))
    cell = lambda v: "(none)" if v is None else str(v).replace("|", "/")  # noqa: E731
    return (["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            + ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in value])


def _numbers(evidence: Mapping[str, Any], limit: int = 10) -> str:
    from bisector.review.pins.store import flatten

    flat = flatten(dict(evidence))
    nums = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items()
            if (_number(v) or isinstance(v, bool)) and not k.startswith("ci")]
    return ", ".join(nums[:limit]) + (" ..." if len(nums) > limit else "")


def reproduce_command(s: SessionSummary) -> str:
    """`bisector run` with the exact bounds (shas) and the options the session was started with."""
    argv = list(s.start.get("argv") or [])
    opts: list[str] = []
    if "run" in argv:
        rest = argv[argv.index("run") + 1:]
        skip = False
        for a in rest:
            if skip:
                skip = False
                continue
            # Bounds are given as shas below; a pin name or a reused session would not re-run
            # the same search, and the command runs in the repository itself.
            if a in ("--good", "--bad", "--pin-good", "--from", "-C"):
                skip = True
                continue
            if a.startswith(("--good=", "--bad=", "--pin-good=", "--from=")) or a == "--":
                continue
            opts.append(a)
        opts = [a for a in opts if a not in s.start.get("paths", [])]
    words = ["bisector", "run", "--bad", s.start["bad"]]
    for g in s.start.get("goods", []):
        words += ["--good", g]
    words += opts
    if s.start.get("first_parent") and "--first-parent" not in words:
        words.append("--first-parent")
    if s.start.get("paths"):
        words += ["--", *s.start["paths"]]
    return shlex.join(words)


def build_report(repo: Path, s: SessionSummary, plot: str | None) -> str:
    """The Markdown text. `plot`: the PNG's file name next to the report, or None (install hint)."""
    from bisector.io.history import commit_info, show_stat

    start, end = s.start, s.end or {}
    shas = [start["bad"], *start.get("goods", []), *start.get("merge_bases", []), *(e["commit"] for e in s.steps)]
    if end.get("culprit"):
        shas.append(end["culprit"])
    info = commit_info(repo, [x for x in shas if x])

    def subject(sha: str) -> str:
        c = info.get(sha)
        return c.subject if c else "(commit not in this repository)"

    posteriors = _posterior_events(s)
    cfg = start.get("config", {})
    axis = "data" if any(e.get("data_rev") and e["data_rev"] != e["commit"] for e in s.steps) else "code"
    out = [f"# Bisection report: session {s.id}", "",
           f"Journal `{s.path}`; started {_utc(start.get('ts'))}; {len(s.steps)} steps; "
           f"status **{status_of(s)}**.", "", "## The question", ""]
    out.append(f"- **Bad:** `{start['bad']}` {subject(start['bad'])}")
    out += [f"- **Good:** `{g}` {subject(g)}" for g in start.get("goods", [])]
    out += [f"- **Merge base (must be good):** `{m}` {subject(m)}" for m in start.get("merge_bases", [])]
    out.append(f"- **Candidates:** {start.get('candidates', '?')} commits; axis: {axis}; first parent only: "
               f"{'yes' if start.get('first_parent') else 'no'}; pathspec: {' '.join(start.get('paths', [])) or '(none)'}")
    for p in cfg.get("probes", {}).get("probes", []):
        shown = {k: v for k, v in p.items() if k not in ("name", "frozen")}
        out.append(f"- **Probe `{p.get('name')}`:** `{json.dumps(shown, sort_keys=True)}`")
    b = cfg.get("build", {})
    out.append(f"- **Build:** `{b.get('command') or '(none)'}` (timeout {b.get('timeout')}, a failed build is "
               f"{b.get('on_failure', 'skip')})")
    out += ["", "Frozen configuration (read once at the start; every commit was judged by it):", "",
            _code(json.dumps(cfg.get("file", {}), indent=2, sort_keys=True), "json"), "", "## The answer", ""]
    culprit = end.get("culprit")
    if not s.end:
        out.append("The session is unfinished: run `bisector run` to resume it.")
    elif end.get("status") == "found" and culprit:
        c = info.get(culprit)
        out.append(f"**`{culprit}` is the first bad commit** (probability {end.get('probability', 0):.2f}).")
        if c:
            out += ["", f"> {c.subject}  ", f"> {c.author}, {c.date}"]
    else:
        out.append(f"**{end.get('status')}:** {end.get('message', '')}")
        if end.get("candidates"):
            out += ["", "Remaining candidates:", ""] + [f"- `{x}` {subject(x)}" for x in end["candidates"]]
    if end.get("attribution"):
        out += ["", f"**Attribution:** {json.dumps(end['attribution']) if not isinstance(end['attribution'], str) else end['attribution']}"]
    if culprit and culprit in info:
        out += ["", "`git show --stat`:", "", _code(show_stat(repo, culprit) or "(no file changes)")]
        parent = str(end.get("parent") or "") or _first_parent(repo, culprit)
        for title, key in (("Data diff (DVC data inputs)", "data_diff"), ("Params diff", "params_diff")):
            try:
                value = end[key] if key in end else _computed_diff(repo, key, parent, culprit)
                rows = _table(value)
            except Exception as exc:  # an unreadable file at that commit must not stop the report
                rows = [f"(could not compute: {str(exc)[:200]})"]
            if rows:
                out += ["", f"{title}, parent `{parent[:10]}` to culprit:", "", *rows]
    out += ["", "## The evidence", ""]
    if plot:
        out += [f"![each probe's main number along the candidates]({plot})", ""]
    else:
        out += [f"(No plot: matplotlib is not installed. `{PLOT_HINT}` to get one.)", ""]
    out += ["| step | role | commit | subject | build | verdict | probe |", "|---|---|---|---|---|---|---|"]
    for e in s.steps:
        summ = "; ".join(f"{o['probe']}: {o.get('summary', '')}" for o in e.get("observations", [])) or "-"
        out.append(f"| {e['step']} | {ROLES.get(e['role'], e['role'])} | `{e['commit'][:10]}` | "
                   f"{subject(e['commit'])[:60]} | {_build(e)} | {e['verdict']} | {summ.replace('|', '/')} |")
    for e in s.steps:
        out += ["", f"### Step {e['step']}: {ROLES.get(e['role'], e['role'])} `{e['commit'][:10]}`: {e['verdict']}", "",
                f"- Revision: `{e['commit']}` {subject(e['commit'])}"]
        if e.get("data_rev") and e["data_rev"] != e["commit"]:
            out.append(f"- Data revision: `{e['data_rev']}`")
        out.append(f"- Build: {_build(e)}" + (f" (log `{e['build']['log']}`)" if e.get("build", {}).get("log") else ""))
        for o in e.get("observations", []):
            nums = _numbers(o.get("evidence", {}))
            out.append(f"- Probe `{o['probe']}`: **{o['verdict']}**: {o.get('summary', '')}" + (f" [{nums}]" if nums else ""))
        if e.get("worker"):
            out.append(f"- Worker: {e['worker']}")
        out += [f"- Note: {n}" for n in e.get("notes") or []]
        if e.get("reused_from"):
            out.append(f"- Reused from session {e['reused_from']}")
        post = e.get("posterior") if e.get("posterior") is not None else posteriors.get(e["step"])
        if post is not None:
            out.append(f"- Posterior after this step: {_posterior(post)}")
        out.append("- Reviewer: [ ] accept  [ ] challenge")
    env = start.get("environment", {})
    out += ["", "## The environment", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in env.items()]
    out += ["", "## Reproduce", "", "Run the search again (probe and build from the frozen config above when not given):", "",
            _code(reproduce_command(s), "sh"), "", "Re-check the decisions of this journal without building anything:", "",
            _code(f"bisector replay {shlex.quote(str(s.path))}", "sh"), ""]
    return "\n".join(out)


def _posterior_events(s: SessionSummary) -> dict[int, dict[str, Any]]:
    """`posterior` events of the journal (noisy searches), by the step they follow."""
    from bisector.journal.writer import read_events

    try:
        events = read_events(Path(s.path))
    except Exception:  # the summary is enough for the rest of the report
        return {}
    return {e["after_step"]: e for e in events if e.get("event") == "posterior" and "after_step" in e}


def _posterior(post: Any) -> str:
    if isinstance(post, Mapping) and isinstance(post.get("top"), list):
        top = ", ".join(f"`{str(r)[:10]}` {p:.3f}" for r, p in post["top"][:5])
        extra = f"; no culprit {post['no_culprit']:.3f}" if _number(post.get("no_culprit")) else ""
        rates = f"; noise rates {post['rates']}" if post.get("rates") else ""
        return top + extra + rates
    return f"`{json.dumps(post)[:300]}`"


def _first_parent(repo: Path, sha: str) -> str:
    from bisector.io.git import parents

    found = parents(repo, sha)
    return found[0] if found else ""


def _build(e: Mapping[str, Any]) -> str:
    b = e.get("build", {})
    status = b.get("status", "none")
    if status == "ok" and _number(b.get("duration")):
        return f"ok ({b['duration']:.1f}s)"
    return str(status)


@dataclass
class ReportResult:
    path: Path
    plot: Path | None  # None: matplotlib missing (the report carries the install hint)


def write_report(repo_path: Path, session: str | None, output: Path | str) -> ReportResult:
    """`bisector report [SESSION] -o FILE.md`: the Markdown report, and FILE.png next to it."""
    from bisector.io.git import repo_root
    from bisector.review.render import find_session

    repo = repo_root(repo_path)
    s = find_session(repo, session)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plotted = plot_session(repo, s, png)
    out.write_text(build_report(repo, s, png.name if plotted else None), encoding="utf-8")
    return ReportResult(out, png if plotted else None)
