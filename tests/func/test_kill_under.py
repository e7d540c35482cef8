"""io.process.kill_under (the steps left running in a worktree die, with their whole group) and
io.workspace.flock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bisector.io.process import kill_under
from bisector.io.state import flock

# A step-like tree: a leader in its own session whose child leaves the folder (cwd elsewhere).
TREE = "import os, subprocess, sys, time\n" \
       "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], cwd='/')\n" \
       "time.sleep(60)\n"


def _children(pid: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = psutil.Process(pid).children()
        if kids:
            return kids
        time.sleep(0.05)
    raise AssertionError("the child never started")


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_kills_the_process_group_inside_and_nothing_outside(tmp_path: Path) -> None:
    inside = tmp_path / "wt" / "sub"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    step = subprocess.Popen([sys.executable, "-c", TREE], cwd=inside, start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=outside,
                             start_new_session=True)
    try:
        grandchild = _children(step.pid)[0]
        killed = kill_under(tmp_path / "wt")
        assert killed == [step.pid]  # the step's group (its leader's pid), once
        assert step.wait(10) == -9
        psutil.wait_procs([grandchild], timeout=10)
        assert _gone(grandchild)  # it had left the folder, but it was in the step's group
        assert other.poll() is None  # another folder: untouched
    finally:
        for p in (step, other):
            p.kill()
            p.wait()


def test_never_kills_its_own_process_and_returns_nothing_for_an_empty_folder(tmp_path: Path) -> None:
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert kill_under(tmp_path) == []  # only this test process works there
    finally:
        os.chdir(here)
    assert kill_under(tmp_path / "missing") == []


def test_flock_excludes_a_second_holder_and_is_released_on_exit(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    with flock(lock):
        with pytest.raises(BlockingIOError):
            with flock(lock, wait=False):
                pass
    with flock(lock, wait=False) as fd:  # released: free again
        assert fd >= 0
