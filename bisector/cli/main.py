"""The command line: thin click commands over the Python API (heavy imports stay inside them)."""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import click

from bisector.cli.data_options import data_options

EXIT_CODES_HELP = """\b
Exit codes:
  0    a culprit was found (and confirmed)
  1    no single culprit: candidates listed, the bounds do not
       reproduce, or the probe aborted
  2    usage or input error (bad revision, missing probe, ...)
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP); run `bisector run`
       again to resume
"""


def _handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's errors into `Error: ...` plus their exit code; tracebacks with -v."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from bisector.core.errors import BisectorError

        ctx = click.get_current_context()
        verbose = (ctx.find_root().params or {}).get("verbose", False)
        try:
            return fn(*args, **kwargs)
        except BisectorError as exc:
            if verbose:
                import traceback

                traceback.print_exc()
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:  # a file or folder in the way, unreadable, full disk: one line too
            if verbose:
                import traceback

                traceback.print_exc()
            click.echo(f"Error: {os_error_line(exc)}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            try:  # after a SIGHUP the terminal may be gone
                click.echo("Interrupted: the journal is saved; run `bisector run` again to resume.", err=True)
            except OSError:
                pass
            sys.exit(130)

    return wrapper


def os_error_line(exc: OSError) -> str:
    """An OSError in one line: what failed, on which file, and the way out."""
    where = f": {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where} (check that path; `bisector -v ...` shows where it happened)"


class Seconds(click.ParamType):
    """A duration in seconds: a finite number > 0 (not 0, negative, inf or nan)."""

    name = "SECS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            secs = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(secs) or secs <= 0 or secs >= 1e9:
            self.fail(f"{value!r} is not a duration: give a number of seconds > 0", param, ctx)
        return secs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="bisector", message="bisector %(version)s")
def main(verbose: bool) -> None:
    """Find the commit (or data revision) that broke a model, by binary search.

    bisector tests revisions between a known-good and a broken one in an isolated
    private clone (your checkout is never touched), builds each one, runs a probe,
    and writes every step to a journal under .bisector/ so a killed run resumes.
    """


@main.command(epilog=EXIT_CODES_HELP)
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@click.option("--good", "goods", multiple=True, metavar="REV", help="A revision where the probe passes (repeatable).")
@click.option("--bad", metavar="REV", help="A revision where the probe fails.")
@click.option("--probe", metavar="CMD", help="Probe command: exit 0 good, 125 skip, 1-127 bad, else abort.")
@click.option("--probe-shell", metavar="CMD",
              help="Probe given as a shell string, run by /bin/sh exactly as written (nothing frozen).")
@click.option("--timeout", "probe_timeout", type=Seconds(), metavar="SECS", help="Per-step probe timeout (a timeout is a skip).")
@click.option("--build", metavar="CMD", help="Build command run in the workspace before the probe.")
@click.option("--build-timeout", type=Seconds(), metavar="SECS", help="Build timeout (a timed-out build is a failed build).")
@click.option(
    "--on-failure",
    type=click.Choice(["skip", "bad", "abort"]),
    help="What a failed build means (default: skip).",
)
@click.option("--first-parent", is_flag=True, help="Follow only the first parent of merges.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Steps to run at once, each in its own clone.")
@click.option("--executor", metavar="URL", envvar="DASK_SCHEDULER_ADDRESS",
              help="Where steps run: local (default), dask://HOST:PORT (needs bisector[dask]) "
                   "or slurm (needs bisector[slurm]; see [executor] in docs/parallel.md).")
@click.option("--noise", type=click.FloatRange(0, 0.5, max_open=True), metavar="P",
              help="The probe's verdict flips with probability P: search with a posterior.")
@click.option("--flaky", type=click.FloatRange(0, 0.5, max_open=True), metavar="F",
              help="One-sided flakes: bad always fails, good fails with rate F (0: learn it).")
@click.option("--learn-noise", is_flag=True, default=None, help="Learn the noise rate from repeated runs (with a floor).")
@click.option("--confidence", type=click.FloatRange(0.5, 1, min_open=True, max_open=True), metavar="C",
              help="Stop when one commit (or 'no culprit') reaches this probability (default 0.99).")
@click.option("--max-steps", type=click.IntRange(min=1), metavar="N", help="Stop after N steps.")
@click.option("--axis", type=click.Choice(["code", "data"]), default="code", show_default=True,
              help="code: each commit with its own data; data: code fixed, DVC-tracked inputs move.")
@click.option("--code-rev", metavar="REV", help="With --axis data: the code to build (default: the bad bound).")
@click.option("--data-rev", metavar="REV", help="Keep the DVC data of REV fixed while the code moves.")
@click.option("--attribute", is_flag=True, help="Always test code-vs-data crossings at the culprit.")
@click.option("--no-cache", is_flag=True, help="Rebuild every step, even when an identical build is cached.")
@click.option("--env", "env", type=click.Choice(["none", "uv", "command"]),
              help="Build and probe each revision in its own environment (uv: from its uv.lock; see docs/env.md).")
@click.option("--with-untracked", "untracked", multiple=True, metavar="PATH",
              help="A file or folder of your checkout that git does not track (a dataset, weights) and every "
                   "step needs: copied into each step's workspace (repeatable; [workspace] untracked).")
@click.option("--from", "reuse_from", metavar="SESSION",
              help="Reuse the observations of a past session that still hold (same code, data and probe).")
@data_options
@click.option("--pin-good", metavar="NAME", help="Afterwards, pin the verified good revision (the culprit's parent) as NAME.")
@click.option("--term-old", metavar="TERM", help="The word for good in every message (as git bisect: fast, pass).")
@click.option("--term-new", metavar="TERM", help="The word for bad (slow, fail).")
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line on stdout, as the journal holds them.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the result.")
@click.argument("paths", nargs=-1, metavar="[-- PATHSPEC...]")
@_handle_errors
def run(pin_good: str | None, as_json: bool, quiet: bool, probe_shell: str | None, **params: Any) -> None:
    """Bisect between --good and --bad with a probe; resume an interrupted session.

    \b
    Examples:
      bisector run --good v1.0 --bad main --probe './check.sh' -- src/
      bisector run --good @tuesday --bad main          (a pin as the good end)
      bisector run --good v1.0 --bad main --axis data  (DVC data moves, code fixed)
      bisector run --good v1.0 --bad main --noise 0.1 -j 4

    The probe and bisector.toml are read from your current checkout once, at the
    start, and frozen: every commit is judged by the same script. With no --good
    and --bad, the unfinished session (if any) is resumed.
    """
    from bisector.core.errors import UsageError
    from bisector.review.pins.store import NAME_RE
    from bisector.review.render import CliHandler, JsonHandler, print_result
    from bisector.run.session import RunOptions, Session

    if probe_shell is not None:
        if params["probe"] is not None:
            raise UsageError("--probe and --probe-shell both give the probe: pass one of them")
        params.update(probe=probe_shell, probe_shell=True)
    if pin_good is not None and not NAME_RE.match(pin_good):
        raise UsageError(f"invalid pin name {pin_good!r} for --pin-good: use letters, digits, '-' and '_' only")
    _sigterm_as_interrupt()
    _quiet_pipe()
    if params["repo"] != ".":
        # As `git -C DIR`: run as if started in DIR (the probe script is frozen from there).
        try:
            os.chdir(params["repo"])
        except OSError as exc:
            raise UsageError(f"cannot change to {params['repo']}: {exc.strerror}") from None
    params.update(repo=Path("."), goods=list(params["goods"]), paths=list(params["paths"]),
                  untracked=list(params["untracked"]))
    _expand_pins(params)
    handler = JsonHandler() if as_json else CliHandler(quiet=quiet)
    session = Session(RunOptions(**params), handler)
    try:
        result = session.run()
    finally:
        getattr(handler, "close", lambda: None)()
    if not as_json:
        terms = session.plan.start.get("terms") or {}
        print_result(session.repo, result, (terms.get("old", "good"), terms.get("new", "bad")), quiet=quiet)
    if pin_good and result.status == "found":
        from bisector.journal.read import summarize
        from bisector.review.pins.make import pin_from_session  # importlib.metadata, platform: only here

        pin = pin_from_session(session.repo, summarize(result.journal), pin_good)
        if not as_json:
            click.echo(f"Pinned @{pin.name}: {pin.commit[:10]} (known good)")
    sys.exit(result.exit_code)


def _expand_pins(params: dict[str, Any]) -> None:
    """`@NAME` revisions to the pins' shas; with --bad and no --good (and nothing to resume),
    the most recent pin before the bad revision is the good bound."""
    from bisector.io.git import repo_root
    from bisector.review.pins.bounds import expand_bounds

    b = expand_bounds(repo_root(params["repo"]), params["goods"], params["bad"], params["code_rev"], params["data_rev"])
    params.update(goods=b.goods, bad=b.bad, code_rev=b.code_rev, data_rev=b.data_rev, pinned_goods=b.pinned_goods)
    if b.chosen is not None:
        click.echo(f"No --good given: using pin @{b.chosen.name} ({b.chosen.commit[:10]}), the most recent pin "
                   "before the bad revision", err=True)


@main.command()
@click.argument("session", required=False)
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "md"]), default="table", help="Output format.")
@_handle_errors
def journal(session: str | None, repo: str, fmt: str) -> None:
    """Show the steps of a session (default: the latest) as a table."""
    from bisector.review.tables import render_journal

    click.echo(render_journal(Path(repo), session, fmt))


@main.command()
@click.argument("session", required=False)
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@_handle_errors
def log(session: str | None, repo: str) -> None:
    """Show a session as a `git bisect log` (replayable with `git bisect replay`)."""
    from bisector.review.tables import render_bisect_log

    click.echo(render_bisect_log(Path(repo), session))


@main.command()
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@_handle_errors
def reset(repo: str) -> None:
    """Drop the unfinished session and remove its clone (journals are kept)."""
    from bisector.run.session import reset as do_reset

    dropped = do_reset(Path(repo))
    click.echo("Dropped: " + ", ".join(dropped) if dropped else "Nothing to reset.")


@main.command()
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@click.option("--prune", is_flag=True, help="Remove entries (all, or those selected by the limits below).")
@click.option("--older-than", type=click.FloatRange(min=0), metavar="DAYS", help="With --prune: unused for DAYS days.")
@click.option("--max-size", type=click.FloatRange(min=0), metavar="MB", help="With --prune: keep at most MB, least recently used go first.")
@_handle_errors
def cache(repo: str, prune: bool, older_than: float | None, max_size: float | None) -> None:
    """Show (or prune) the build cache and the environment cache (builds and environments of
    earlier steps, restored instead of rebuilt), bisector's git-lfs store and the step logs."""
    from bisector.build.cache import BuildCache
    from bisector.io.clonecfg import lfs_objects, prune_lfs
    from bisector.io.envcache import EnvCache
    from bisector.io.git import repo_root
    from bisector.io.state import state_dir
    from bisector.journal.logs import list_logs, prune_logs
    from bisector.journal.read import find_unfinished
    from bisector.review.tables import render_cache, render_envs

    bc = BuildCache.for_repo(repo_root(Path(repo)))
    ec = EnvCache.for_repo(repo_root(Path(repo)))
    if prune:
        if older_than is None and max_size is None:
            max_size = 0.0  # no limit given: remove everything
        limits = {"older_than": older_than * 86400 if older_than is not None else None,
                  "max_bytes": int(max_size * 1e6) if max_size is not None else None}
        dropped = bc.prune(**limits)
        click.echo(f"Removed {len(dropped)} entries ({sum(e.size for e in dropped) / 1e6:.1f} MB).")
        envs = ec.prune(**limits)  # the limits apply to each cache on its own
        if envs:
            click.echo(f"Removed {len(envs)} environments ({sum(e.size for e in envs) / 1e6:.1f} MB).")
        lfs = prune_lfs(state_dir(repo_root(Path(repo))), **limits)
        if lfs:
            click.echo(f"Removed {len(lfs)} git-lfs objects of bisector's store "
                       f"({sum(o.size for o in lfs) / 1e6:.1f} MB of their own; the rest were links to yours).")
        unfinished = find_unfinished(repo_root(Path(repo)))
        logs = prune_logs(repo_root(Path(repo)), **limits, keep=(unfinished.stem,) if unfinished else ())
        if logs:
            click.echo(f"Removed the step logs of {len(logs)} sessions ({sum(e.size for e in logs) / 1e6:.1f} MB); "
                       "reports now say they were removed.")
        return
    envs = render_envs(ec)
    if envs:
        click.echo(envs)
    click.echo(render_cache(bc))
    lfs = lfs_objects(state_dir(repo_root(Path(repo))))
    if lfs:
        click.echo(f"git-lfs store: {len(lfs)} objects, {sum(o.size for o in lfs) / 1e6:.1f} MB of their own "
                   "(downloaded for old revisions; the others are hard links to your .git/lfs)")
    kept = list_logs(repo_root(Path(repo)))
    if kept:
        click.echo(f"Step logs: {len(kept)} sessions, {sum(e.size for e in kept) / 1e6:.1f} MB "
                   "(kept for journals and reports; `--prune` removes them)")


@main.command()
@_handle_errors
def probes() -> None:
    """List the probe types available (built in and from plugins)."""
    from bisector.probes.registry import available

    items = available()
    width = max(len(n) for n in items)
    for name, desc in items.items():
        click.echo(f"{name:<{width}}  {desc}")


@main.command()
@click.option("--keep", is_flag=True, help="Keep the demo repository and print its path.")
@click.option("--plain", is_flag=True, help="The git-only demo (no DVC, no torch): a few seconds.")
@click.option("--scenario", type=click.Choice(["data", "code"]), default="data", show_default=True,
              help="What the planted regression is: a bad annotation batch, or a BGR/RGB swap in the loader.")
@_handle_errors
def demo(keep: bool, plain: bool, scenario: str) -> None:
    """Build a small ML project with a planted regression and bisect it.

    The project has DVC-tracked data and a torch model trained by `dvc repro`; the probe
    is an accuracy threshold. In the data scenario one commit added badly annotated data
    next to a loader refactor: bisector finds it and tests whether the code or the data is
    to blame. In the code scenario a loader refactor swaps RGB to BGR. About a minute.
    """
    from bisector.demo.plain import run_demo

    sys.exit(run_demo(keep=keep, plain=plain, scenario=scenario))


# Commands that live in their own modules (each has `register(main)`; click only at import).
_EXTRA_COMMAND_MODULES = ("bisector.cli.review", "bisector.cli.manual", "bisector.cli.init")


def _register_extra_commands() -> None:
    import importlib

    for name in _EXTRA_COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(main)


_register_extra_commands()


def _sigterm_as_interrupt() -> None:
    """SIGTERM and SIGHUP (the terminal closed) end a run like Ctrl-C: steps are killed, the
    journal kept, the clone removed, exit 130."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


class QuietPipe:
    """sys.stdout that outlives its reader: once a write fails with EPIPE (`bisector run | head
    -1`), stdout becomes /dev/null and the run goes on to its end (journal, clean-up, exit code)."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._closed()

    def _closed(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # what is still buffered goes nowhere
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _quiet_pipe() -> None:
    """Install QuietPipe on a real stdout (not under click's test runner)."""
    if isinstance(sys.stdout, QuietPipe):
        return
    try:
        sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    sys.stdout = QuietPipe(sys.stdout)
