"""`bisector start/good/bad/skip/view`: git bisect's habits, on the session's journal.

A session marked by hand is started with `bisector start --good G --bad B` (no probe) and
then marked from any terminal; `good`/`bad`/`skip` also reach a running `bisector run`
(it takes the marks before its next step). With `--term-old fast --term-new slow`,
`bisector fast` and `bisector slow` mark too, and every message speaks of fast and slow.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from bisector.cli.review import _errors as _handle_errors

_TERM = re.compile(r"^[a-z][a-z0-9_-]*$")
_RESERVED = {"skip", "start", "view", "visualize", "run", "reset", "log", "journal", "report"}


def _check_terms(old: str | None, new: str | None) -> None:
    from bisector.core.errors import UsageError

    for t in (old, new):
        if t is not None and (not _TERM.match(t) or t in _RESERVED):
            raise UsageError(f"invalid term {t!r}: use a lower-case word that is not a bisector command")
    if (old or "good") == (new or "bad"):
        raise UsageError("--term-old and --term-new must differ")


@click.command(name="start")
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@click.option("--good", "goods", multiple=True, metavar="REV", help="A revision known good (repeatable).")
@click.option("--bad", metavar="REV", help="A revision known bad.")
@click.option("--term-old", metavar="TERM", help="The word for good (as git bisect: e.g. fast, pass).")
@click.option("--term-new", metavar="TERM", help="The word for bad (e.g. slow, fail).")
@click.option("--first-parent", is_flag=True, help="Follow only the first parent of merges.")
@click.argument("paths", nargs=-1, metavar="[-- PATHSPEC...]")
@_handle_errors
def start(repo: str, goods: tuple[str, ...], bad: str | None, term_old: str | None, term_new: str | None,
          first_parent: bool, paths: tuple[str, ...]) -> None:
    """Start a session that you mark by hand, as `git bisect start`.

    \b
    bisector start --good v1.0 --bad main
    bisector good | bisector bad | bisector skip [REV | A..B ...]   (from any terminal)
    bisector view                                                  (what is left)
    """
    from bisector.run.manual import start as do_start
    from bisector.run.plan import RunOptions

    _check_terms(term_old, term_new)
    p = do_start(RunOptions(repo=Path(repo), bad=bad, goods=list(goods), first_parent=first_parent,
                            paths=list(paths), term_old=term_old, term_new=term_new))
    _show(repo, p)


def _mark_command(name: str, verdict: str, help_text: str, hidden: bool = False) -> click.Command:
    @click.command(name=name, help=help_text, hidden=hidden)
    @click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
    @click.argument("revs", nargs=-1, metavar="[REV | A..B]...")
    @_handle_errors
    def command(repo: str, revs: tuple[str, ...]) -> None:
        from bisector.core.model import Verdict
        from bisector.run.manual import mark

        _show(repo, mark(Path(repo), Verdict(verdict), list(revs)))

    return command


def _show(repo: str, p: Any) -> None:
    from bisector.io.git import repo_root
    from bisector.review.marks import progress_text

    click.echo(progress_text(repo_root(Path(repo)), p))
    if p.outcome is not None:
        sys.exit(0 if p.outcome.status.value == "found" else 1)


@click.command(name="view")
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@_handle_errors
def view(repo: str) -> None:
    """Show the revisions left to test, as `git log --graph --oneline` (git bisect view)."""
    from bisector.io.git import repo_root
    from bisector.review.marks import view_text
    from bisector.run.manual import status

    p = status(Path(repo))
    start = p.start
    click.echo(view_text(repo_root(Path(repo)), p, first_parent=bool(start.get("first_parent")),
                         paths=tuple(start.get("paths") or ())))


def _term_command(name: str) -> click.Command | None:
    """`bisector fast` when the unfinished session's terms are fast/slow."""
    try:
        from bisector.io.git import repo_root
        from bisector.journal.read import find_unfinished, read_events

        path = find_unfinished(repo_root(Path(".")))
        terms = (read_events(path)[0].get("terms") or {}) if path is not None else {}
    except Exception:  # not in a repository, an unreadable journal: not a term
        return None
    for key, verdict in (("old", "good"), ("new", "bad")):
        if terms.get(key) == name:
            return _mark_command(name, verdict, f"Mark revisions {name} (this session's word for {verdict}).")
    return None


def register(main: click.Group) -> None:
    main.add_command(start)
    for name, verdict in (("good", "good"), ("bad", "bad"), ("skip", "skip"), ("old", "good"), ("new", "bad")):
        main.add_command(_mark_command(name, verdict, f"Mark revisions {verdict} (default: the one the session asks); "
                                                      "A..B marks a range.", hidden=name in ("old", "new")))
    main.add_command(view)
    original = main.get_command

    def get_command(ctx: click.Context, name: str) -> click.Command | None:
        return original(ctx, name) or _term_command(name)

    main.get_command = get_command  # type: ignore[method-assign]
