"""`bisector run`'s options for real repositories: data, network, build, bounds, probe script."""

from __future__ import annotations

from typing import Any, Callable

import click

_OPTIONS = (
    click.option("--data/--no-data", "data", default=None,
                 help="--no-data: plain worktree steps in a DVC repository, nothing fetched or checked out "
                      "(also [dvc] materialize = false). Default: automatic, no data when the build is off "
                      "and no probe reads DVC-tracked paths."),
    click.option("--offline", is_flag=True,
                 help="Never contact a DVC remote: objects missing from the cache are rebuilt when a stage "
                      "makes them, else the step is skipped (automatic after the first failed fetch)."),
    click.option("--no-build", is_flag=True, help="Run no build at all, not even the default `dvc repro`."),
    click.option("--trust-bounds", is_flag=True,
                 help="Probe neither bound, as `git bisect run` (default: the bad bound first, the good "
                      "bound only when the culprit's parent is the good bound)."),
    click.option("--probe-from", type=click.Choice(["frozen", "commit"]),
                 help="frozen (default): today's probe script, placed at its own path in each worktree; "
                      "commit: each commit's own copy of the script, as `git bisect run`."),
)


def data_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn
