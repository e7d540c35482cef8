"""Commands for pins and for reviewing journals: pin, pins, restore, sessions, report, replay.

Only click and the standard library are imported here; each command imports its module when
it runs, so `bisector --help` stays fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import click

_REPO = click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """As cli._handle_errors: `Error: <one line>` and the error's exit code; tracebacks with -v."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from bisector.core.errors import BisectorError

        try:
            return fn(*args, **kwargs)
        except BisectorError as exc:
            if (click.get_current_context().find_root().params or {}).get("verbose"):
                import traceback

                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # as cli._handle_errors
            from bisector.cli.main import os_error_line

            if (click.get_current_context().find_root().params or {}).get("verbose"):
                import traceback

                traceback.print_exc()
            click.echo(f"Error: {os_error_line(exc)}", err=True)
            sys.exit(2)

    return wrapper


class _PinGroup(click.Group):
    """`bisector pin NAME ...` means `bisector pin add NAME ...`; `show` and `rm` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["add", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_PinGroup)
def pin() -> None:
    """Record a known-good configuration: `bisector pin NAME [--rev REV] [--verify]`.

    \b
    A pin keeps the commit, the DVC data hashes and params at it, the probe
    results that made it good and the environment, in .bisector/pins.toml
    (commit that file to share it). Use it wherever a revision is expected:
      bisector run --good @NAME --bad main
      bisector restore NAME DIR
    """


@pin.command("add")
@click.argument("name")
@click.option("--rev", default="HEAD", show_default=True, metavar="REV", help="The revision to pin.")
@click.option("--data-rev", metavar="REV", help="Take the DVC data from this revision instead.")
@click.option("--note", default="", metavar="TEXT", help="Why this configuration is good.")
@click.option("--verify", is_flag=True, help="Build and probe it first (probes of bisector.toml); refuse if not good.")
@click.option("--force", is_flag=True, help="Replace a pin of that name (or pin a revision that fails --verify).")
@_REPO
@_errors
def pin_add(name: str, rev: str, data_rev: str | None, note: str, verify: bool, force: bool, repo: str) -> None:
    """Pin REV (default HEAD) under NAME."""
    from bisector.review.pins.make import create_pin

    p = create_pin(Path(repo), name, rev, data_rev=data_rev, note=note, verify_first=verify, force=force)
    how = f", verified {p.verdict}" if p.verdict else ""
    click.echo(f"Pinned {p.name} = {p.commit} ({len(p.data)} data hashes{how}) in .bisector/pins.toml")


@pin.command("show")
@click.argument("name")
@_REPO
@_errors
def pin_show(name: str, repo: str) -> None:
    """Show everything a pin recorded."""
    from bisector.io.git import repo_root
    from bisector.review.pins.store import check_commit, get_pin, show_text

    root = repo_root(Path(repo))
    p = get_pin(root, name)
    check_commit(root, p)
    click.echo(show_text(p), nl=False)


@pin.command("rm")
@click.argument("name")
@_REPO
@_errors
def pin_rm(name: str, repo: str) -> None:
    """Remove a pin."""
    from bisector.review.pins.store import remove_pin

    p = remove_pin(Path(repo), name)
    click.echo(f"Removed pin {p.name} ({p.short}).")


@click.command()
@_REPO
@_errors
def pins(repo: str) -> None:
    """List the pins of .bisector/pins.toml."""
    from bisector.review.tables import render_pins

    click.echo(render_pins(Path(repo)))


@click.command()
@click.argument("name")
@click.argument("directory", type=click.Path(file_okay=False))
@_REPO
@_errors
def restore(name: str, directory: str, repo: str) -> None:
    """Materialize pin NAME (code, DVC data and, with [env], its environment in .venv) into
    DIRECTORY, a new or empty folder."""
    from bisector.review.pins.restore import restore as do_restore

    r = do_restore(Path(repo), name, Path(directory))
    data = f", {r.data_files} DVC-tracked paths checked out" if r.dvc else ""
    click.echo(f"Restored {name} ({r.commit[:10]}) into {r.path}{data}.")
    for note in r.notes:
        click.echo(f"Note: {note}", err=True)
    if r.env_key:
        how = "built, then restored" if r.env_built else "restored from the environment cache"
        click.echo(f"Environment {r.env_key[:12]} {how} into {r.path / '.venv'}.")
    if r.env_note:
        click.echo(f"Warning: {r.env_note}", err=True)


@click.command()
@_REPO
@_errors
def sessions(repo: str) -> None:
    """List the sessions of .bisector/sessions/ (id, start, bounds, probe, status, culprit)."""
    from bisector.review.tables import render_sessions

    click.echo(render_sessions(Path(repo)))


@click.command()
@click.argument("session", required=False)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to write the report (Markdown: a PNG plot goes next to it).")
@click.option("--html", "as_html", is_flag=True,
              help="One self-contained HTML file (inline plot, evidence table, diffs) to attach to a ticket.")
@_REPO
@_errors
def report(session: str | None, output: str, as_html: bool, repo: str) -> None:
    """Write a Markdown (or --html) report of a session (default: the latest) for review."""
    from bisector.api import report as write
    from bisector.review.report import PLOT_HINT

    if as_html:
        click.echo(f"Wrote {write(Path(repo), session, Path(output), html=True).path}")
        return
    r = write(Path(repo), session, Path(output))
    extra = f" and {r.plot}" if r.plot else f" (no plot: {PLOT_HINT})"
    click.echo(f"Wrote {r.path}{extra}")


@click.command()
@click.argument("journal", type=click.Path(dir_okay=False))
@click.option("-C", "repo", default=None, type=click.Path(file_okay=False),
              help="The repository (default: the one holding the journal).")
@_errors
def replay(journal: str, repo: str | None) -> None:
    """Re-run a journal's decisions without building: OK, or the first divergence (exit 1)."""
    from bisector.journal.replay import replay as do_replay

    r = do_replay(Path(journal), Path(repo) if repo else None)
    click.echo(r.message)
    sys.exit(0 if r.ok else 1)


def register(main: click.Group) -> None:
    for cmd in (pin, pins, restore, sessions, report, replay):
        main.add_command(cmd)
