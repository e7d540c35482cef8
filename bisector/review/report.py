"""Reviewing journals: the `sessions` table and a Markdown report a reviewer can check step by step.

The report states the question (bounds, axis, probes, frozen config), the answer (culprit,
probability, attribution, diff stats), the evidence (every step with its numbers, and a plot when
matplotlib is installed), the environment and the commands that reproduce the search.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from bisector.core.model import Attribution, Status, Step, Verdict
from bisector.io.data.files import flatten
from bisector.io.data.history import data_diff, params_diff
from bisector.io.git import git, repo_root
from bisector.io.git import parents as git_parents
from bisector.io.commits import commit_info, show_stat
from bisector.journal.logs import PRUNED, log_exists
from bisector.journal.read import SessionSummary, find_session
from bisector.probes.base import is_number, main_number, threshold
from bisector.review.tables import status_of, utc
from bisector.review.text import attribution_sentence

PLOT_HINT = "pip install 'bisector[plot]'"
ROLES = {"bad-bound": "check bad", "good-bound": "check good", "merge-base": "check merge base",
         "search": "search", "confirm": "confirm"}


# ------------------------------------------------------------------------ plot
def candidate_order(repo: Path, s: SessionSummary) -> list[str]:
    """The candidates oldest first (the x axis of the plot), from git."""
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
    for st in s.steps:
        x = pos.get(st.commit, -1)  # good bounds and merge bases sit just before the first candidate
        for o in st.result.observations:
            m = main_number(o)
            if m is None:
                continue
            d = series.setdefault(o.probe, {"x": [], "y": [], "c": [], "label": m[0], "limit": None})
            lim = threshold(o.evidence)
            if lim is not None:
                d["limit"] = lim  # the last one: a relative rule's limit follows its baseline
            d["x"].append(x)
            d["y"].append(m[1])
            d["c"].append({Verdict.GOOD: "tab:green", Verdict.BAD: "tab:red"}.get(o.verdict, "tab:gray"))
    n = max(1, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.6 * n), squeeze=False)
    culprit = s.outcome.culprit if s.outcome else None
    for ax, (name, d) in zip(axes[:, 0], sorted(series.items()) or [("(no numbers)", None)]):
        if d:
            ax.scatter(d["x"], d["y"], c=d["c"], zorder=3)
            ax.set_ylabel(d["label"])
            if d["limit"] is not None:
                ax.axhline(d["limit"], color="tab:orange", linestyle="-.", label=f"threshold {d['limit']:g}")
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


def _diff_rows(repo: Path, key: str, parent: str, culprit: str) -> list[dict[str, Any]]:
    if key == "data_diff":
        return [{"path": c.path, "change": c.status, "before": c.old_hash, "after": c.new_hash}
                for c in data_diff(repo, parent, culprit)]
    return [{"key": k, "before": a, "after": b} for k, (a, b) in params_diff(repo, parent, culprit).items()]


def _table(rows: list[Mapping[str, Any]]) -> list[str]:
    """A Markdown table of rows (dicts with the same keys)."""
    if not rows:
        return []
    cols = list(dict.fromkeys(k for r in rows for k in r))
    cell = lambda v: "(none)" if v is None else str(v).replace("|", "/")  # noqa: E731
    return (["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            + ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows])


def _attribution(att: Attribution) -> list[str]:
    """The attribution as a sentence, and the crossings as a table when they were tested."""
    out = [f"**Attribution:** {attribution_sentence(att)}."]
    changed = ", ".join(k for k in ("code", "data") if att.changed.get(k)) or "neither"
    out += ["", f"What the culprit changed against its parent: {changed}."]
    if att.crossings:
        out += ["", "| code | data | verdict |", "|---|---|---|"]
        names = {"parent_code_culprit_data": ("parent", "culprit"), "culprit_code_parent_data": ("culprit", "parent")}
        for name, verdict in att.crossings.items():
            code, data = names.get(name, (name, ""))
            out.append(f"| {code} | {data} | {verdict.value} |")
    return out


def _numbers(evidence: Mapping[str, Any], limit: int = 10) -> str:
    flat = flatten(dict(evidence))
    nums = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items()
            if (is_number(v) or isinstance(v, bool)) and not k.startswith("ci")]
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


def _subject_of(repo: Path, s: SessionSummary) -> Any:
    out = s.outcome
    shas = [s.start["bad"], *s.start.get("goods", []), *s.start.get("merge_bases", []), *(st.commit for st in s.steps)]
    if out and out.culprit:
        shas.append(out.culprit)
    if out:
        shas += list(out.candidates)
    return commit_info(repo, [x for x in shas if x])


def _question(s: SessionSummary, subject: Any) -> list[str]:
    start, cfg = s.start, s.start.get("config", {})
    out = [f"- **Bad:** `{start['bad']}` {subject(start['bad'])}"]
    out += [f"- **Good:** `{g}` {subject(g)}" for g in start.get("goods", [])]
    out += [f"- **Merge base (must be good):** `{m}` {subject(m)}" for m in start.get("merge_bases", [])]
    what = "data revisions" if s.axis == "data" else "commits"
    out.append(f"- **Candidates:** {start.get('candidates', '?')} {what}; axis: {s.axis}; first parent only: "
               f"{'yes' if start.get('first_parent') else 'no'}; pathspec: {' '.join(start.get('paths', [])) or '(none)'}")
    if s.axis == "data" and start.get("code_rev"):
        out.append(f"- **Code (fixed):** `{start['code_rev']}` {subject(start['code_rev'])}")
    for p in cfg.get("probes", {}).get("probes", []):
        shown = {k: v for k, v in p.items() if k not in ("name", "frozen")}
        out.append(f"- **Probe `{p.get('name')}`:** `{json.dumps(shown, sort_keys=True)}`")
    b = cfg.get("build", {})
    out.append(f"- **Build:** `{b.get('command') or '(none)'}` (timeout {b.get('timeout')}, a failed build is "
               f"{b.get('on_failure', 'skip')})")
    return out + ["", "Frozen configuration (read once at the start; every commit was judged by it):", "",
                  _code(json.dumps(cfg.get("file", {}), indent=2, sort_keys=True), "json")]


def _answer(repo: Path, s: SessionSummary, info: Any, subject: Any) -> list[str]:
    end = s.outcome
    if s.end is None or end is None:
        return ["The session is unfinished: run `bisector run` to resume it." if s.end is None
                else "The session's end event cannot be read."]
    culprit = end.culprit
    out: list[str] = []
    if end.status is Status.FOUND and culprit:
        c = info.get(culprit)
        what = "data revision" if s.axis == "data" else "commit"
        out.append(f"**`{culprit}` is the first bad {what}** (probability {end.probability:.2f}).")
        if c:
            out += ["", f"> {c.subject}  ", f"> {c.author}, {c.date}"]
    else:
        out.append(f"**{end.status.value}:** {end.message}")
        if end.candidates:
            out += ["", "Remaining candidates:", ""] + [f"- `{x}` {subject(x)}" for x in end.candidates]
    if end.attribution:
        out += ["", *_attribution(end.attribution)]
    if culprit and culprit in info:
        out += ["", "`git show --stat`:", "", _code(show_stat(repo, culprit) or "(no file changes)")]
        parent = _first_parent(repo, culprit)
        diffs = [("Data diff (DVC data inputs)", "data_diff")]
        if s.axis != "data":  # on the data axis the code (and its params) stayed fixed
            diffs.append(("Params diff", "params_diff"))
        for title, key in diffs if parent else ():
            try:
                rows = _table(_diff_rows(repo, key, parent, culprit))
            except Exception as exc:  # an unreadable file at that commit must not stop the report
                rows = [f"(could not compute: {str(exc)[:200]})"]
            if rows:
                out += ["", f"{title}, parent `{parent[:10]}` to culprit:", "", *rows]
    return out


def _step_section(st: Step, subject: Any, posterior: Mapping[str, Any] | None) -> list[str]:
    label = ROLES.get(st.role.value, st.role.value)
    out = ["", f"### Step {st.number}: {label} `{st.commit[:10]}`: {st.verdict.value}", "",
           f"- Revision: `{st.commit}` {subject(st.commit)}"]
    if st.data_rev and st.data_rev != st.commit:
        out.append(f"- Data revision: `{st.data_rev}`")
    b = st.result.build
    out.append(f"- Build: {_build(st)}" + _log_link(b.log))
    for o in st.result.observations:
        nums = _numbers(o.evidence)
        out.append(f"- Probe `{o.probe}`: **{o.verdict.value}**: {o.summary}" + (f" [{nums}]" if nums else "")
                   + _log_link(o.log))
    if st.result.worker:
        out.append(f"- Worker: {st.result.worker}")
    out += [f"- Note: {n}" for n in st.result.notes]
    if st.reused_from:
        out.append(f"- Reused from session {st.reused_from}")
    if posterior is not None:
        out.append(f"- Posterior after this step: {_posterior(posterior)}")
    out.append("- Reviewer: [ ] accept  [ ] challenge")
    return out


def build_report(repo: Path, s: SessionSummary, plot: str | None) -> str:
    """The Markdown text. `plot`: the PNG's file name next to the report, or None (install hint)."""
    info = _subject_of(repo, s)

    def subject(sha: str) -> str:
        c = info.get(sha)
        return c.subject if c else "(commit not in this repository)"

    start = s.start
    out = [f"# Bisection report: session {s.id}", "",
           (f"Journal `{s.path}`; started {utc(start.get('ts'))}; {len(s.steps)} steps; "
            f"status **{status_of(s)}**."), "", "## The question", ""]
    out += _question(s, subject)
    out += ["", "## The answer", ""] + _answer(repo, s, info, subject)
    out += ["", "## The evidence", ""]
    if plot:
        out += [f"![each probe's main number along the candidates]({plot})", ""]
    else:
        out += [f"(No plot: matplotlib is not installed. `{PLOT_HINT}` to get one.)", ""]
    out += ["| step | role | commit | subject | build | verdict | probe |", "|---|---|---|---|---|---|---|"]
    for st in s.steps:
        summ = "; ".join(f"{o.probe}: {o.summary}" for o in st.result.observations) or "-"
        out.append(f"| {st.number} | {ROLES.get(st.role.value, st.role.value)} | `{st.commit[:10]}` | "
                   f"{subject(st.commit)[:60]} | {_build(st)} | {st.verdict.value} | {summ.replace('|', '/')} |")
    posteriors = s.posteriors()
    for st in s.steps:
        out += _step_section(st, subject, posteriors.get(st.number))
    env = start.get("environment", {})
    out += ["", "## The environment", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in env.items()]
    out += ["", "## Reproduce", "", "Run the search again (probe and build from the frozen config above when not given):", "",
            _code(reproduce_command(s), "sh"), "", "Re-check the decisions of this journal without building anything:", "",
            _code(f"bisector replay {shlex.quote(str(s.path))}", "sh"), ""]
    return "\n".join(out)


def _posterior(post: Mapping[str, Any]) -> str:
    if isinstance(post.get("top"), list):
        top = ", ".join(f"`{str(r)[:10]}` {p:.3f}" for r, p in post["top"][:5])
        extra = f"; no culprit {post['no_culprit']:.3f}" if is_number(post.get("no_culprit")) else ""
        rates = f"; noise rates {post['rates']}" if post.get("rates") else ""
        return top + extra + rates
    return f"`{json.dumps(post)[:300]}`"


def _first_parent(repo: Path, sha: str) -> str:
    found = git_parents(repo, sha)
    return found[0] if found else ""


def _log_link(path: str | None) -> str:
    """` (log `PATH`)`, saying so when `bisector cache --prune` removed it; '' for no log."""
    if not path:
        return ""
    return f" (log `{path}`)" if log_exists(path) else f" (log `{path}`: {PRUNED})"


def _build(st: Step) -> str:
    b = st.result.build
    if b.status == "ok":
        return f"ok ({b.duration:.1f}s)"
    return b.status


@dataclass
class ReportResult:
    path: Path
    plot: Path | None  # None: matplotlib missing (the report carries the install hint)


def write_report(repo_path: Path, session: str | None, output: Path | str) -> ReportResult:
    """`bisector report [SESSION] -o FILE.md`: the Markdown report, and FILE.png next to it."""
    repo = repo_root(repo_path)
    s = find_session(repo, session)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    plotted = plot_session(repo, s, png)
    out.write_text(build_report(repo, s, png.name if plotted else None), encoding="utf-8")
    return ReportResult(out, png if plotted else None)
