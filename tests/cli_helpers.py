"""Shared helpers of the end-to-end tests: run the CLI, a counting probe, read the journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from repos import GitRepo

BISECTOR = [sys.executable, "-m", "bisector.cli"]


def bisector(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BISECTOR, *args], cwd=repo, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
    )


def probe_script(tmp_path: Path, body: str = "") -> Path:
    """A probe outside the repo: bad when state.txt says broken; logs each completed run."""
    p = tmp_path / "probe.sh"
    p.write_text(
        "#!/bin/sh\n"
        f"{body}\n"
        'grep -q broken state.txt && v=1 || v=0\n'
        f'echo "$BISECTOR_COMMIT $v" >> {tmp_path}/runs.log\n'
        "exit $v\n"
    )
    p.chmod(0o755)
    return p


def completed_runs(tmp_path: Path) -> list[str]:
    log = tmp_path / "runs.log"
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


def journal_events(repo: Path) -> list[dict]:
    files = sorted((repo / ".bisector" / "sessions").glob("*.jsonl"))
    assert files
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def dirty_user_state(repo: GitRepo) -> None:
    """Uncommitted, staged, untracked and stashed changes that must survive untouched."""
    repo.write({"notes.txt": "stash me\n"})
    repo.git("add", "notes.txt")
    repo.git("stash")
    repo.write({"n.txt": "uncommitted edit\n", "untracked.txt": "mine\n", "staged.txt": "staged\n"})
    repo.git("add", "staged.txt")


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)
