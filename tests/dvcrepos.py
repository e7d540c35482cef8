"""Declarative real git + DVC repositories for tests, with a local DVC remote in a temp folder.

Layout of one fixture: `<base>/repo` (the user's checkout), `<base>/cache` (its DVC cache,
set in `.dvc/config.local` as `../../cache`), `<base>/remote` (the default remote, committed
as `../../remote`). All three are relative, so `copy_to` gives an independent copy in a few
milliseconds; tests copy one template per session (`template`) instead of building their own.
The fixture's `dvc add` / `dvc repro` run in-process through DVC's API (`DvcRepo.api`), about
5 s for the whole standard history instead of 20-30 s with one CLI start-up per call on a
loaded machine; the code under test always uses the `dvc` CLI.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from repos import GitRepo

from bisector.data.dvccli import dvc_executable


def hermetic_env(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    gitconfig = base / "gitconfig"
    if not gitconfig.exists():
        gitconfig.write_text("[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n")
    env.update({
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_AUTHOR_NAME": "Test Author", "GIT_AUTHOR_EMAIL": "author@example.com",
        "GIT_COMMITTER_NAME": "Test Committer", "GIT_COMMITTER_EMAIL": "committer@example.com",
        "DVC_NO_ANALYTICS": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(base / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(base / "dvc-system"),
        "DVC_SITE_CACHE_DIR": str(base / "dvc-site"),
    })
    return env


class DvcRepo(GitRepo):
    """`repo.dvc_commit(code={...}, data={...}, message=..., repro=True)`; `repo.push_all()`."""

    def __init__(self, base: Path):
        super().__init__(base / "repo")
        self.base = base
        self.env = hermetic_env(base)
        self.remote = base / "remote"
        self.cache = base / "cache"

    @classmethod
    def create(cls, base: Path) -> "DvcRepo":
        base.mkdir(parents=True, exist_ok=True)
        r = cls(base)
        r.path.mkdir()
        r.git("init", "-q", "-b", "main", ".")
        return r

    @contextlib.contextmanager
    def api(self) -> Iterator[Any]:
        """DVC's Python API on this repo, in-process (the fixture's own `dvc add` / `dvc repro`:
        ~0.1 s each instead of ~0.4-1.5 s of CLI start-up), with the hermetic environment."""
        from dvc.repo import Repo

        saved_env, saved_cwd = dict(os.environ), os.getcwd()
        os.environ.update(self.env)
        os.chdir(self.path)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore", DeprecationWarning)  # DVC's own, from its graph code
                with Repo(str(self.path)) as repo:
                    yield repo
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)

    def dvc_init(self) -> None:
        """`dvc init`, then the default remote and the cache dir written as `dvc remote add -d` /
        `dvc config --local` would write them."""
        from dvc.repo import Repo

        with contextlib.redirect_stdout(io.StringIO()):
            Repo.init(str(self.path)).close()
        with open(self.path / ".dvc" / "config", "a") as f:
            f.write("[core]\n    remote = store\n['remote \"store\"']\n    url = ../../remote\n")
        (self.path / ".dvc" / "config.local").write_text("[cache]\n    dir = ../../cache\n")

    # ---- commands, always with the hermetic environment
    def git(self, *args: str, input: str | None = None) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True, input=input, env=self.env
        ).stdout

    def dvc(self, *args: str, check: bool = True) -> str:
        res = subprocess.run([dvc_executable(), *args], cwd=self.path, capture_output=True, text=True, env=self.env)
        if check and res.returncode != 0:
            raise AssertionError(f"dvc {' '.join(args)} failed: {res.stdout}{res.stderr}")
        return res.stdout

    def commit(self, files: Mapping[str, str | bytes | None] | None = None, message: str = "change") -> str:
        self.write(files or {})
        self.git("add", "-A")
        self._tick += 1
        stamp = f"@{1767225600 + self._tick * 60} +0000"
        env = {**self.env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        subprocess.run(["git", "-C", str(self.path), "commit", "-q", "--allow-empty", "-m", message],
                       check=True, capture_output=True, env=env)
        return self.rev("HEAD")

    def dvc_commit(
        self,
        code: Mapping[str, str | None] | None = None,
        data: Mapping[str, str | bytes | None] | None = None,
        message: str = "change",
        *,
        repro: bool = False,
    ) -> str:
        """Write code files, write and `dvc add` data files, optionally `dvc repro`, commit."""
        self.write(code or {})
        if data:
            self.write({k: v for k, v in data.items() if v is not None})  # None: already written (a folder)
            with self.api() as dvc:
                dvc.add(list(data))
        if repro:
            with self.api() as dvc:
                dvc.reproduce()
        return self.commit({}, message)

    def push_all(self) -> None:
        """Every object of every commit so far goes to the remote, as `dvc push --all-commits`
        would, by copying the cache's `files/` (a local remote has the cache's layout).

        Not `dvc push --all-commits` itself: it resolves the committed relative remote URL of
        older commits against `/` and writes to `/remote` (DVC 3.67), and one call per commit
        costs ~1 s each.
        """
        shutil.copytree(self.cache / "files", self.remote / "files", dirs_exist_ok=True)

    # ---- inspection
    def cache_object(self, md5: str) -> Path:
        return self.cache / "files" / "md5" / md5[:2] / md5[2:]

    def md5_of(self, dvcfile: str, rev: str = "HEAD") -> str:
        text = self.git("show", f"{rev}:{dvcfile}")
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if "md5:" in line)

    def copy_to(self, base: Path) -> "DvcRepo":
        """An independent copy (repo, cache, remote) under `base`."""
        base.mkdir(parents=True, exist_ok=True)
        for name in ("repo", "cache", "remote"):
            if (self.base / name).exists():
                shutil.copytree(self.base / name, base / name, symlinks=True)
        r = DvcRepo(base)
        r._tick = self._tick
        return r


TRAIN = """\
import json
scale = int(open("params.yaml").read().split(":")[1])
raw = open("data/raw.txt").read().strip()
labels = open("data/labels.txt").read().strip()
open("model.txt", "w").write(f"{VERSION}:{raw}:{labels}:{scale}\\n")
json.dump({"score": len(raw) * scale}, open("metrics.json", "w"))
"""


def train_py(version: str) -> str:
    return f'VERSION = "{version}"\n' + TRAIN


DVC_YAML = f"""\
stages:
  train:
    cmd: {sys.executable} train.py
    deps: [train.py, data/raw.txt, data/labels.txt]
    params: [scale]
    outs: [model.txt]
    metrics:
    - metrics.json:
        cache: false
"""


def ml_history(base: Path) -> tuple[DvcRepo, dict[str, str]]:
    """The standard history, commits by name:

    pre      README only, before `dvc init` (code-only)
    init     train.py v1, dvc.yaml, params scale 1; data raw=alpha labels=L1; repro
    readme   code only
    dataB    raw=bravo (dvc.lock left stale, as users do)
    codeV2   train.py v2
    params   scale 2; repro (dvc.lock changes: deps and outputs, not the inputs' .dvc files)
    labels   labels=L2
    both     train.py v3 and raw=charlie; repro
    images   a folder input data/images (two files, one in a subfolder)
    (everything so far pushed to the remote: `push_all`)
    unpushed raw=delta; never pushed
    """
    r = DvcRepo.create(base)
    c = {"pre": r.commit({"README.md": "toy\n"}, "pre-dvc")}
    r.dvc_init()
    c["init"] = r.dvc_commit(
        {"train.py": train_py("v1"), "dvc.yaml": DVC_YAML, "params.yaml": "scale: 1\n"},
        {"data/raw.txt": "alpha\n", "data/labels.txt": "L1\n"}, "init", repro=True)
    c["readme"] = r.dvc_commit({"README.md": "toy project\n"}, None, "readme")
    c["dataB"] = r.dvc_commit(None, {"data/raw.txt": "bravo\n"}, "data B")
    c["codeV2"] = r.dvc_commit({"train.py": train_py("v2")}, None, "code v2")
    c["params"] = r.dvc_commit({"params.yaml": "scale: 2\n"}, None, "params", repro=True)
    c["labels"] = r.dvc_commit(None, {"data/labels.txt": "L2\n"}, "labels")
    c["both"] = r.dvc_commit({"train.py": train_py("v3")}, {"data/raw.txt": "charlie\n"}, "both", repro=True)
    r.write({"data/images/a.txt": "image a\n", "data/images/b/c.txt": "image c\n"})
    c["images"] = r.dvc_commit(None, {"data/images": None}, "images")  # a directory input
    r.push_all()
    c["unpushed"] = r.dvc_commit(None, {"data/raw.txt": "delta\n"}, "unpushed")
    return r, c


_TEMPLATES: dict[str, tuple[DvcRepo, dict[str, str]]] = {}


def template(tmp_path_factory, name: str = "ml") -> tuple[DvcRepo, dict[str, str]]:
    """Build the named history once per test session (shared by every DVC test module)."""
    if name not in _TEMPLATES:
        _TEMPLATES[name] = ml_history(tmp_path_factory.mktemp(f"dvc-template-{name}"))
    return _TEMPLATES[name]
