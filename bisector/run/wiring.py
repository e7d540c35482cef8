"""What a step is made of: the workspace it materializes in and the probe suite it runs.

Low in `run`: the step, the executors (local and on Dask workers), the session and
`pin --verify` all build these two things here, the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from bisector.io.data import DvcWorkspace
from bisector.io.workspace import Workspace
from bisector.probes import registry


def make_suite(specs: Sequence[Mapping[str, Any]], user_cwd: Path, frozen_dir: Path, stop_early: bool = True) -> Any:
    """The probe suite of `specs` (see `bisector.probes.registry.make_suite`)."""
    return registry.make_suite([dict(s) for s in specs], user_cwd=user_cwd, frozen_dir=frozen_dir, stop_early=stop_early)


def make_workspace(repo: Path, session_dir: Path, dvc: Mapping[str, Any] | None = None,
                   untracked: Sequence[str] = ()) -> Workspace:
    """A plain git worktree, or one that also materializes DVC data when the repo uses DVC
    (unless `materialize` is false: --no-data, or the automatic choice). `untracked`: files of
    the user's checkout, not in git, that every step gets (`--with-untracked`)."""
    dvc = dvc or {}
    if (repo / ".dvc").is_dir() and dvc.get("materialize", True) is not False:
        return DvcWorkspace(
            repo,
            session_dir,
            link_type=dvc.get("link_type", "reflink,copy"),
            timeout=dvc.get("timeout"),
            data_paths=dvc.get("data_paths", ()),
            verify=bool(dvc.get("verify", False)),
            offline=bool(dvc.get("offline", False)),
            untracked=untracked,
        )
    return Workspace(repo, session_dir, untracked=untracked)
