"""Declarative real git repositories for tests: `repo.commit({"file": "text"}, "message")`."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Mapping


class GitRepo:
    def __init__(self, path: Path):
        self.path = path
        self._tick = 0

    @classmethod
    def init(cls, path: Path) -> "GitRepo":
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
        return cls(path)

    def git(self, *args: str, input: str | None = None) -> str:
        return subprocess.run(
            ["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True, input=input
        ).stdout

    def write(self, files: Mapping[str, str | bytes | None]) -> None:
        for name, content in files.items():
            p = self.path / name
            if content is None:
                if p.exists():
                    p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)

    def commit(self, files: Mapping[str, str | bytes | None] | None = None, message: str = "change") -> str:
        """Write files (None deletes), stage everything, commit with a deterministic date."""
        self.write(files or {})
        self.git("add", "-A")
        self._tick += 1
        env = {**os.environ, "GIT_AUTHOR_DATE": f"@{1767225600 + self._tick * 60} +0000",
               "GIT_COMMITTER_DATE": f"@{1767225600 + self._tick * 60} +0000"}
        subprocess.run(
            ["git", "-C", str(self.path), "commit", "-q", "--allow-empty", "-m", message],
            check=True, capture_output=True, env=env,
        )
        return self.rev("HEAD")

    def rev(self, rev: str) -> str:
        return self.git("rev-parse", rev).strip()


def linear_history(repo: GitRepo, n: int, culprit: int) -> list[str]:
    """n commits; from commit `culprit` (1-based) on, `state.txt` says broken."""
    shas = []
    for i in range(1, n + 1):
        shas.append(repo.commit({"state.txt": "broken\n" if i >= culprit else "ok\n", "n.txt": f"{i}\n"}, f"commit {i}"))
    return shas


def snapshot(path: Path) -> dict[str, object]:
    """Everything of a checkout bisector promises not to touch (but .bisector/)."""
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(path), *args], capture_output=True, text=True
        ).stdout

    files = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if rel.parts[0] in (".git", ".bisector") or not p.is_file():
            continue
        files[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{oct(p.stat().st_mode)}"
    git_dir = path / ".git"
    return {
        "files": files,
        "index": hashlib.sha256((git_dir / "index").read_bytes()).hexdigest() if (git_dir / "index").exists() else None,
        "HEAD": (git_dir / "HEAD").read_text(),
        "head_sha": run("rev-parse", "HEAD"),
        "stash": run("stash", "list"),
        "stash_ref": run("rev-parse", "-q", "--verify", "refs/stash"),
        "status": [
            line
            for line in run("status", "--porcelain", "--untracked-files=all", "--ignored").splitlines()
            if not line[3:].startswith(".bisector/")
        ],
        "worktrees": run("worktree", "list", "--porcelain"),
        "refs": run("for-each-ref"),
    }
