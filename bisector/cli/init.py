"""`bisector init`: write a commented bisector.toml for the repository (click only at import)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Run in this repository.")
@click.option("--force", is_flag=True, help="Replace an existing bisector.toml.")
def init(repo: str, force: bool) -> None:
    """Write a commented bisector.toml for this repository.

    \b
    It looks for DVC and the stages of dvc.yaml (the build: `dvc repro`), a
    metrics file and its numbers (a `metric` probe against the good bound) and
    tests (a `pytest` probe on today's test files, or `make test`). Then:
      bisector run --good REV --bad REV
    """
    from bisector.api import init as write
    from bisector.cli.main import _handle_errors

    @_handle_errors
    def go() -> None:
        path, found = write(Path(repo), force=force)
        seen = []
        if found.dvc:
            seen.append("DVC" + (f" (stages: {', '.join(found.stages)})" if found.stages else ""))
        if found.metric:
            seen.append(f"metric {found.metric[1]} in {found.metric[0]}")
        if found.tests:
            seen.append(f"tests {' '.join(found.tests)}")
        elif found.test_command:
            seen.append(f"test command `{found.test_command}`")
        click.echo(f"Wrote {path}" + (f" ({'; '.join(seen)})" if seen else " (no probe found: edit its [probe])"))
        click.echo("Next: bisector run --good REV --bad REV")

    go()


def register(main: click.Group) -> None:
    main.add_command(init)
