"""numpy is imported on first use, and a run imports it while `git rev-list` walks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bisector.core import arrays
from bisector.io.process import iter_line_chunks


def test_importing_the_run_path_does_not_import_numpy() -> None:
    code = ("import sys\nimport bisector.run.session, bisector.core.search, bisector.io.history\n"
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_first_attribute_imports_numpy_and_is_kept() -> None:
    import numpy

    assert arrays.np.int64 is numpy.int64
    assert "int64" in vars(arrays.np)  # kept: the next lookup skips the import machinery
    assert arrays.np.zeros(3).sum() == 0


def test_meanwhile_runs_after_the_command_started_and_before_its_output_is_read(tmp_path: Path) -> None:
    events: list[str] = []
    started = tmp_path / "started"

    def meanwhile() -> None:
        events.append("meanwhile")

    cmd = ["sh", "-c", f"touch {started}; printf 'a\\nb\\n'"]
    for chunk in iter_line_chunks(cmd, cwd=tmp_path, meanwhile=meanwhile):
        events.append(chunk.decode())
    assert events[0] == "meanwhile" and "".join(events[1:]) == "a\nb\n"
    assert started.exists()


def test_load_candidates_imports_numpy_after_starting_git(tmp_path: Path) -> None:
    """In a fresh process: numpy is not imported before `load_candidates` starts git."""
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for i in range(3):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q",
                        "--allow-empty", "-m", f"c{i}"], check=True)
    code = (
        "import sys\nfrom pathlib import Path\nfrom bisector.io import history, process\n"
        "seen = []\nreal = process.iter_line_chunks\n"
        "def spy(*a, **k):\n    seen.append('numpy' in sys.modules)\n    yield from real(*a, **k)\n"
        "history.iter_line_chunks = spy\n"
        f"c = history.load_candidates(Path({str(repo)!r}), 'HEAD', ['HEAD~2'])\n"
        "print(seen, 'numpy' in sys.modules, len(c.parents))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[False]", "True", "2"], out
