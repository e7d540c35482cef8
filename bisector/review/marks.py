"""What `bisector start/good/bad/skip/view` print: git bisect's messages, in the session's terms."""

from __future__ import annotations

from pathlib import Path

from bisector.core.model import Status
from bisector.io.git import git
from bisector.io.commits import commit_info, show_stat
from bisector.run.manual import Progress


def progress_text(repo: Path, p: Progress) -> str:
    old, new = p.terms
    if p.queued:
        return (f"Marked {p.queued} revision{'s' if p.queued != 1 else ''} for the running session {p.session}: "
                "it takes them before its next step.")
    if p.outcome is None and p.ask:
        info = commit_info(repo, [p.ask]).get(p.ask)
        after = max(0, len(p.left) - 1)
        return (f"Bisecting: {after} revision{'s' if after != 1 else ''} left to test after this "
                f"(roughly {p.est_steps} step{'s' if p.est_steps != 1 else ''})\n"
                f"[{p.ask}] {info.subject if info else ''}\n"
                f"Test it, then mark it: bisector {old} | bisector {new} | bisector skip")
    o = p.outcome
    assert o is not None
    if o.status is Status.FOUND and o.culprit:
        info = commit_info(repo, [o.culprit]).get(o.culprit)
        lines = [f"{o.culprit} is the first {new} commit"]
        if info:
            lines += [f"Author: {info.author}", f"Date:   {info.date}", "", f"    {info.subject}", ""]
        stat = show_stat(repo, o.culprit)
        if stat:
            lines.append(stat)
        return "\n".join(lines).rstrip("\n")
    if o.status is Status.AMBIGUOUS:
        infos = commit_info(repo, o.candidates)
        lines = ["There are only 'skip'ped commits left to test.", f"The first {new} commit could be any of:"]
        lines += [f"{sha} {infos[sha].subject if sha in infos else ''}".rstrip() for sha in o.candidates]
        return "\n".join(lines) + f"\nWe cannot bisect more! (session {p.session})"
    return f"No first {new} commit: {_in_terms(o.message, old, new)}"


def _in_terms(text: str, old: str, new: str) -> str:
    if (old, new) == ("good", "bad"):
        return text
    return text.replace(" is good", f" is {old}").replace(" is bad", f" is {new}")


def view_text(repo: Path, p: Progress, *, first_parent: bool = False, paths: tuple[str, ...] = ()) -> str:
    """The revisions left, as `git log --graph --oneline` draws them (the one to test marked)."""
    left = set(p.left)
    if not left:
        return "Nothing left to test."
    parents_inside = set()
    for line in git(repo, "rev-list", "--parents", "--no-walk", *sorted(left)).splitlines():
        parents_inside |= set(line.split()[1:]) & left
    tips = sorted(left - parents_inside)
    args = ["log", "--graph", "--format=%H %h %s"] + (["--first-parent"] if first_parent else [])
    args += tips + ["--not", *p.goods]
    if paths:
        args += ["--", *paths]
    skipped = set(p.skipped)
    out = []
    for line in git(repo, *args).splitlines():
        graph, _, rest = line.partition("* ") if "* " in line else (line, "", "")
        if not rest:
            out.append(line.rstrip())
            continue
        sha, short, subject = (rest.split(" ", 2) + ["", ""])[:3]
        if sha not in left:
            continue
        note = "  <- test this" if sha == p.ask else "  (skipped)" if sha in skipped else ""
        out.append(f"{graph}* {short} {subject}{note}".rstrip())
    return "\n".join(out)
