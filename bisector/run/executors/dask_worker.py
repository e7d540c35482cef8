"""The worker side of the Dask executor: the functions the cluster runs (dask.py submits them).

Each takes a plain-dict spec, so nothing but the spec travels: `run_step_in_worker` (one step),
`warm_up_worker` (make the revision and the worktree ready), `stop_worker_steps` and
`clean_worker` (at the end). Workers that do not share the client's filesystem work from a clone
of `repo_url` in their own cache (`worker_spec`, `sync_from_remote`). Nothing here imports
distributed: these run inside a worker, which already has it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from bisector.core.errors import UsageError
from bisector.io.process import capture, kill_under
from bisector.io.state import flock, remove_checkout
from bisector.run.step import open_workspace, run_step


def run_step_in_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on a worker: `bisector.run.step.run_step` on the worker's view of the spec.

    Its worktree is created first, under a lock; with `repo_url` the revision is fetched into
    the worker's cache clone first (see `worker_spec`).
    """
    return run_step(warm_up_worker(spec))


def warm_up_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on a worker: make it ready to run `spec` (revision present, worktree made); the local spec."""
    local = worker_spec(spec)
    if spec.get("repo_url"):
        sync_from_remote(local, spec["repo_url"], spec["rev"], spec.get("frozen_files", {}))
    prepare_worker(local)
    return local


def worker_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as this worker sees it.

    On the client's filesystem (no `repo_url`): unchanged. With `repo_url` (workers that do not
    share our filesystem): the repository is the worker's clone of that URL in its cache
    (`worker_cache`, else $BISECTOR_WORKER_CACHE, else ~/.cache/bisector), and the worktrees,
    logs and frozen probe files live in `<cache>/sessions/<session>/`.
    """
    url = spec.get("repo_url")
    if not url:
        return spec
    default_cache = Path.home() / ".cache" / "bisector"
    cache = Path(spec.get("worker_cache") or os.environ.get("BISECTOR_WORKER_CACHE") or default_cache)
    clone = cache / "repos" / hashlib.sha256(url.encode()).hexdigest()[:16]
    local = cache / "sessions" / Path(spec["workspace_dir"]).parent.name  # .../sessions/<id>/remote
    frozen = local / "frozen"
    out = {
        **spec,
        "repo": str(clone),
        "workspace_dir": str(local / "remote"),
        "frozen_dir": str(frozen),
        "user_cwd": str(local),
    }
    if "probe_specs" in spec:
        out["probe_specs"] = _swap_paths(spec["probe_specs"], str(spec["frozen_dir"]), str(frozen))
    if "step" in spec:
        out["log_dir"] = str(local / "logs" / f"step-{spec['step']}")
    out.pop("frozen_files", None)
    return out


def _swap_paths(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_swap_paths(v, old, new) for v in value]
    if isinstance(value, dict):
        return {_swap_paths(k, old, new): _swap_paths(v, old, new) for k, v in value.items()}  # keys: `frozen`
    return value


def read_frozen(frozen_dir: Path) -> dict[str, tuple[int, str]]:
    """{relative path: (mode, base64 content)} of the frozen probe files, to ship in the spec."""
    out: dict[str, tuple[int, str]] = {}
    if frozen_dir.is_dir():
        for p in sorted(frozen_dir.rglob("*")):
            if p.is_file() and not p.is_symlink():  # a committed symlink is not followed
                content = base64.b64encode(p.read_bytes()).decode()
                out[str(p.relative_to(frozen_dir))] = (p.stat().st_mode & 0o777, content)
    return out


def sync_from_remote(local: dict[str, Any], url: str, rev: str, frozen_files: dict[str, Any]) -> None:
    """Runs on a worker: its cache clone of `url` has `rev`; the frozen probe files are written.

    One clone per URL and worker host (`git clone --no-checkout`), shared by the worker
    processes there under an flock; a missing revision is fetched. A revision the remote does
    not have is the user's to fix (push it), so that is a UsageError, which stops the session.
    """
    clone = Path(local["repo"])
    clone.parent.mkdir(parents=True, exist_ok=True)

    def has(r: str) -> bool:
        return capture(["git", "-C", str(clone), "cat-file", "-e", f"{r}^{{commit}}"], cwd=clone).returncode == 0

    with flock(f"{clone}.lock"):
        if not (clone / ".git").is_dir():
            tmp = clone.with_name(clone.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            res = capture(["git", "clone", "--quiet", "--no-checkout", url, str(tmp)], cwd=clone.parent)
            if res.returncode != 0:
                raise UsageError(
                    f"worker cannot clone {url}: {res.stderr.strip()[:300]}: check repo_url and the worker's git access"
                )
            os.replace(tmp, clone)
        for fetch in (["fetch", "--quiet", "origin"], ["fetch", "--quiet", "origin", rev]):
            if has(rev):
                break
            capture(["git", "-C", str(clone), *fetch], cwd=clone)
        if not has(rev):
            raise UsageError(f"revision {rev[:10]} is not in {url}: push it (and the bounds) to that remote")
    frozen = Path(local["frozen_dir"])
    for rel, (mode, data) in frozen_files.items():
        path = frozen / rel
        content = base64.b64decode(data)
        if not path.exists() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_file = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp_file.write_bytes(content)
            os.chmod(tmp_file, mode)
            os.replace(tmp_file, path)


def prepare_worker(spec: dict[str, Any]) -> None:
    """Runs on a worker: open its worktree `workspace_dir/w<pid>/wt` (run_step's layout) at `rev`,
    once per process, kept for run_step (a DvcWorkspace needs that; see step.open_workspace,
    which holds the flock that keeps workers starting together from racing in git)."""
    open_workspace(spec)


def stop_worker_steps(spec: dict[str, Any]) -> list[int]:
    """Runs on each worker (client.run): kill our step processes there (see io.process.kill_under)."""
    return kill_under(worker_spec(spec)["workspace_dir"])


def clean_worker(spec: dict[str, Any]) -> None:
    """Runs on each worker (client.run) with `repo_url`: remove the session's clones and files there."""
    local = worker_spec(spec)
    workspace_dir = Path(local["workspace_dir"])
    kill_under(str(workspace_dir))
    if workspace_dir.is_dir():
        with flock(workspace_dir / ".lock"):
            for wt in sorted(workspace_dir.glob("*/wt")):
                remove_checkout(wt.parent)
    shutil.rmtree(workspace_dir.parent, ignore_errors=True)  # <cache>/sessions/<id>
