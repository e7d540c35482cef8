"""Shared helpers of scripts/bench_*: the repository root on sys.path, a temporary folder kept with
`--keep`, and a timed `bisector run` whose new session journal is read back.

Scripts import it as `from _bench import ...` (their own folder is on sys.path when run as
`python scripts/bench_x.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def add_keep_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed)")


@contextlib.contextmanager
def temp_dir(prefix: str, keep: bool, parent: str | None = None) -> Iterator[Path]:
    """A fresh temporary folder, removed at the end unless `keep` (then its path is printed)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield base
    finally:
        if keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def sessions(repo: Path) -> set[Path]:
    d = repo / ".bisector" / "sessions"
    return set(d.glob("*.jsonl")) if d.is_dir() else set()


@dataclass
class CliRun:
    """One `bisector run` process: its argv, wall time, exit code and the events of its new session."""

    argv: list[str]
    wall: float
    rc: int
    events: list[dict] = field(default_factory=list)

    @property
    def steps(self) -> list[dict]:
        return [e for e in self.events if e["event"] == "step"]

    @property
    def end(self) -> dict:
        return next((e for e in reversed(self.events) if e["event"] == "end"), {})


def bisector_run(repo: Path, args: list[str], env: dict[str, str], label: str = "bisector run") -> CliRun:
    """`python -m bisector.cli run -C REPO ARGS` as a real process (wall time is the whole process);
    exits the script with both outputs when it fails (exit 0 and 1 are results) or journals no new session."""
    before = sessions(repo)
    argv = [sys.executable, "-m", "bisector.cli", "run", "-C", str(repo), *args]
    t0 = time.monotonic()
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    new = sorted(sessions(repo) - before)
    if res.returncode not in (0, 1) or len(new) != 1:
        print(res.stdout, res.stderr, file=sys.stderr)
        raise SystemExit(f"{label}: bisector run exited {res.returncode}, {len(new)} new journal(s)")
    events = [json.loads(line) for line in new[0].read_text().splitlines() if line.strip()]
    return CliRun(argv, wall, res.returncode, events)
