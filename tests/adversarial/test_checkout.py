"""The user's checkout is sealed from the steps (docs/security.md, "The workspace: a private clone").

Each case bisects a real history with a probe that does something hostile to git in its step's
checkout (stash, config, commit, gc, rewriting or deleting `.git`), or with the user's
repository in a state a linked worktree would inherit (sparse checkout, hooks, a dirty tree, an
exported GIT_DIR). Every case asserts that the right culprit is found, that the user's checkout
is byte-identical before and after (working tree files, `.git/index`, HEAD, every ref, the stash,
`.git/config`, `.git/info/sparse-checkout`, hooks, worktrees), and that no canary was written.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.cli import bisector, dirty_user_state
from tests.fixtures.procs import assert_no_worktrees
from tests.fixtures.repos import GitRepo, linear_history, snapshot

N, CULPRIT = 6, 4  # commits, and the first broken one (1-based)


@dataclass
class Ctx:
    repo: GitRepo  # where bisector runs (the user's checkout)
    tmp: Path
    shas: list[str]
    canary: Path
    env: dict[str, str] = field(default_factory=dict)  # exported when bisector runs
    watch: list[Path] = field(default_factory=list)  # other checkouts that must not change either
    good: str = ""
    bad: str = "main"


@dataclass
class Case:
    name: str
    hostile: str = ""  # shell lines the probe runs in the step's checkout before judging it
    setup: Callable[[Ctx], None] | None = None


def _hook(ctx: Ctx, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("post-checkout", "pre-commit", "post-commit", "reference-transaction"):
        hook = folder / name
        hook.write_text(f"#!/bin/sh\necho {name} >> {ctx.canary}\n")
        hook.chmod(0o755)


def _sparse(ctx: Ctx) -> None:
    """The user works on a sparse checkout without state.txt, which the probe reads."""
    ctx.repo.git("sparse-checkout", "set", "--no-cone", "/n.txt")
    assert not (ctx.repo.path / "state.txt").exists()


def _user_hooks(ctx: Ctx) -> None:
    _hook(ctx, ctx.repo.path / ".git" / "hooks")


def _hooks_path(ctx: Ctx) -> None:
    _hook(ctx, ctx.tmp / "my-hooks")
    ctx.repo.git("config", "core.hooksPath", str(ctx.tmp / "my-hooks"))


def _global_hooks_path(ctx: Ctx) -> None:
    _hook(ctx, ctx.tmp / "global-hooks")
    subprocess.run(["git", "config", "--global", "core.hooksPath", str(ctx.tmp / "global-hooks")], check=True)


def _template_hooks(ctx: Ctx) -> None:
    """init.templateDir with hooks: `git clone` would copy them into every new repository."""
    _hook(ctx, ctx.tmp / "template" / "hooks")
    subprocess.run(["git", "config", "--global", "init.templateDir", str(ctx.tmp / "template")], check=True)


def _export(**env: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        user = ctx.repo.path
        ctx.env.update({k: v.format(git=user / ".git", repo=user) for k, v in env.items()})
    return setup


def _decoy_git_dir(ctx: Ctx) -> None:
    """An editor exported GIT_DIR of another repository: bisector still bisects the one it runs in."""
    decoy = GitRepo.init(ctx.tmp / "decoy")
    decoy.commit({"state.txt": "broken\n"}, "decoy")
    ctx.watch.append(decoy.path)
    ctx.env.update(GIT_DIR=str(decoy.path / ".git"), GIT_WORK_TREE=str(decoy.path))


def _linked_worktree(ctx: Ctx) -> None:
    """The user runs bisector in a linked worktree of their main checkout."""
    main = ctx.repo
    linked = ctx.tmp / "linked"
    main.git("worktree", "add", "-q", "--detach", str(linked), "main")
    ctx.watch.append(main.path)
    ctx.repo = GitRepo(linked)


def _gitlink(ctx: Ctx) -> None:
    """A commit with a submodule-like gitlink (no .gitmodules): checked out as an empty folder."""
    repo = ctx.repo
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{ctx.shas[0]},vendor/lib")
    repo.git("commit", "-q", "-m", "gitlink")
    repo.commit({"n.txt": "after the gitlink\n"}, "after")


def _unreachable_bad(ctx: Ctx) -> None:
    """The bad bound is reachable from no ref (a SHA only): the clone must still check it out."""
    repo = ctx.repo
    repo.git("checkout", "-q", "--detach", "main")
    ctx.bad = repo.commit({"n.txt": "dangling\n"}, "dangling")
    repo.git("checkout", "-q", "main")
    assert not repo.git("for-each-ref", "--contains", ctx.bad).strip()


def _shallow(ctx: Ctx) -> None:
    """The user works in a shallow clone (`--depth`): the good bound is inside it, the root is not."""
    shallow = ctx.tmp / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", str(N - 1), f"file://{ctx.repo.path}", str(shallow)], check=True)
    ctx.repo = GitRepo(shallow)
    ctx.good = ctx.shas[1]
    assert (shallow / ".git" / "shallow").is_file()


def _partial(ctx: Ctx) -> None:
    """The user works in a partial clone (`--filter=blob:none`): old revisions' files are not
    local; git fetches them from the promisor remote when a checkout needs them."""
    ctx.repo.git("config", "uploadpack.allowFilter", "true")
    ctx.repo.git("config", "uploadpack.allowAnySHA1InWant", "true")
    subprocess.run(["git", "config", "--global", "protocol.file.allow", "always"], check=True)  # lazy fetches from file://
    partial = ctx.tmp / "partial"
    ctx.watch.append(ctx.repo.path)  # the promisor remote: a probe's `git push` reaches nothing
    subprocess.run(["git", "clone", "-q", "--filter=blob:none", f"file://{ctx.repo.path}", str(partial)], check=True)
    ctx.repo = GitRepo(partial)
    missing = ctx.repo.git("rev-list", "--objects", "--missing=print", "--all").splitlines()
    assert any(line.startswith("?") for line in missing)


CASES = [
    Case("probe-git-stash", "echo dirty >> n.txt; git stash -q"),
    Case("probe-git-config-local", "git config user.name Mallory; git config core.bare true"),
    Case("probe-git-config-worktree", "git config core.worktree {repo}; git config core.sparseCheckout true; "
                                      "printf '/n.txt\\n' > \"$(git rev-parse --git-dir)/info/sparse-checkout\""),
    Case("probe-git-config-global", "git config --global user.name Mallory"),
    Case("probe-redirects-dot-git", "echo 'gitdir: {git}' > .git"),
    Case("probe-deletes-dot-git", "rm -f .git"),
    Case("probe-makes-dot-git-a-repo", "rm -f .git; git init -q ."),
    Case("probe-branch-and-commit", "git checkout -q -b mine$$; echo x > new.txt; git add -A; git commit -qm mine"),
    Case("probe-gc-prune-now", "git reflog expire --expire=now --all; git gc -q --prune=now"),
    Case("probe-removes-alternates", "rm -f \"$(git rev-parse --git-dir)/objects/info/alternates\""),
    Case("exported-git-dir", "echo dirty >> n.txt; git stash -q", _export(GIT_DIR="{git}")),
    Case("exported-work-tree-and-index", "git add -A", _export(GIT_DIR="{git}", GIT_WORK_TREE="{repo}",
                                                                 GIT_INDEX_FILE="{git}/index")),
    Case("exported-object-dir-and-ceiling", "", _export(GIT_OBJECT_DIRECTORY="/nonexistent",
                                                         GIT_CEILING_DIRECTORIES="/")),
    Case("exported-decoy-git-dir", "", _decoy_git_dir),
    Case("user-sparse-checkout", "", _sparse),
    Case("user-dirty-tree", "git status --short > /dev/null", lambda ctx: dirty_user_state(ctx.repo)),
    Case("user-hooks", "git commit -q --allow-empty -m x", _user_hooks),
    Case("user-core-hookspath", "git commit -q --allow-empty -m x", _hooks_path),
    Case("global-core-hookspath", "git commit -q --allow-empty -m x", _global_hooks_path),
    Case("global-template-hooks", "git commit -q --allow-empty -m x", _template_hooks),
    Case("user-in-linked-worktree", "echo dirty >> n.txt; git stash -q", _linked_worktree),
    Case("gitlink", "", _gitlink),
    Case("bad-bound-only-a-sha", "", _unreachable_bad),
    Case("user-shallow-clone", "echo dirty >> n.txt; git stash -q; git fetch -q --unshallow", _shallow),
    Case("user-partial-clone", "echo dirty >> n.txt; git stash -q; git push -q origin HEAD:refs/heads/mine", _partial),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_users_checkout_is_sealed(case: Case, repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, N, CULPRIT)
    ctx = Ctx(repo, tmp_path, shas, tmp_path / "canary", good=shas[0])
    if case.setup:
        case.setup(ctx)
    user = ctx.repo.path
    hostile = (case.hostile or "true").format(git=Path(ctx.repo.git("rev-parse", "--absolute-git-dir").strip()), repo=user)
    probe = tmp_path / "check.sh"
    probe.write_text(f"#!/bin/sh\n{{ {hostile} ; }} >/dev/null 2>&1\ngrep -qx ok state.txt || exit 1\nexit 0\n")
    probe.chmod(0o755)
    before = {p: snapshot(p) for p in (user, *ctx.watch)}

    res = bisector(user, "run", "--good", ctx.good, "--bad", ctx.bad, "--probe", str(probe), env=ctx.env)

    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{shas[CULPRIT - 1]} is the first bad commit" in res.stdout, res.stdout + res.stderr
    assert {p: snapshot(p) for p in (user, *ctx.watch)} == before
    assert not ctx.canary.exists(), ctx.canary.read_text()  # no hook of the user's ran
    if case.setup is not _linked_worktree:  # (there, the user's own two worktrees are listed)
        assert_no_worktrees(ctx.repo)
    assert subprocess.run(["git", "-C", str(user), "fsck", "--no-dangling", "--connectivity-only"],
                          capture_output=True).returncode == 0


def test_the_clone_borrows_objects_and_sees_no_user_config(repo: GitRepo, tmp_path: Path) -> None:
    """The step's checkout: its own git folder outside the work tree, objects through alternates,
    no sparse-checkout, no hooks, no remote; the probe sees it as `git rev-parse` does."""
    shas = linear_history(repo, N, CULPRIT)
    repo.git("config", "core.sparseCheckout", "true")
    repo.git("config", "user.name", "Only Mine")
    report = tmp_path / "seen.txt"
    probe = tmp_path / "check.sh"
    probe.write_text(
        "#!/bin/sh\n"
        f"{{ git rev-parse --git-dir; cat .git; git config --get user.name; git config --get core.hooksPath;"
        f"  git config --get core.sparseCheckout; git remote; cat \"$(git rev-parse --git-dir)/objects/info/alternates\";"
        f"  ls \"$(git rev-parse --git-dir)/objects/pack\" | wc -l; }} > {report} 2>&1\n"
        "grep -qx ok state.txt || exit 1\n"
    )
    probe.chmod(0o755)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe))
    assert res.returncode == 0, res.stderr
    seen = report.read_text().splitlines()
    git_dir = seen[0]
    assert Path(git_dir).name == "git" and "/.git/bisector/sessions/" in git_dir, seen
    assert seen[1] == f"gitdir: {git_dir}"
    assert "Only Mine" not in seen  # the user's repository config is not the clone's
    assert "/dev/null" in seen and "false" in seen  # hooks off, no sparse checkout
    assert seen[-2] == str(repo.path / ".git" / "objects")  # borrowed, not copied
    assert seen[-1].strip() == "0"


def test_a_shallow_users_clone_borrows_objects_too(repo: GitRepo, tmp_path: Path) -> None:
    """git ignores `clone --shared` for a shallow source and copies every object: the step's
    repository is made by hand instead (alternates, the shallow boundary, branches and tags)."""
    shas = linear_history(repo, 10, culprit=8)
    repo.git("tag", "v-mid", shas[6])
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "5", f"file://{repo.path}", str(shallow)], check=True)
    assert (shallow / ".git" / "shallow").is_file()
    report = tmp_path / "seen.txt"
    probe = tmp_path / "check.sh"
    probe.write_text(
        "#!/bin/sh\n"
        f"{{ d=$(git rev-parse --git-dir); ls \"$d/objects/pack\" | wc -l; cat \"$d/objects/info/alternates\";"
        f"  git rev-parse --verify -q refs/heads/main; git rev-parse --verify -q 'refs/tags/v-mid^{{commit}}';"
        f"  git rev-parse --is-shallow-repository; }} > {report} 2>&1\n"
        "grep -qx ok state.txt || exit 1\n"
    )
    probe.chmod(0o755)
    before = snapshot(shallow)
    res = bisector(shallow, "run", "--good", shas[5], "--bad", "main", "--probe", str(probe))
    assert res.returncode == 0, res.stderr
    assert f"{shas[7]} is the first bad commit" in res.stdout
    seen = report.read_text().split()
    assert seen == ["0", str(shallow / ".git" / "objects"), shas[-1], shas[6], "true"], seen
    assert snapshot(shallow) == before


def _partial_user(repo: GitRepo, tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A history in `repo` (the server) and the user's partial clone of it: (shas, user, server)."""
    shas = linear_history(repo, N, CULPRIT)
    ctx = Ctx(repo, tmp_path, shas, tmp_path / "canary", good=shas[0])
    _partial(ctx)
    return shas, ctx.repo.path, repo.path


@contextmanager
def _gone(server: Path) -> Iterator[None]:
    """The partial clone's server is unreachable (moved away) meanwhile."""
    away = server.with_name("away")
    server.rename(away)
    try:
        yield
    finally:
        away.rename(server)


def test_a_partial_clone_whose_remote_is_gone_is_one_error_line_and_resumes_once_it_is_back(repo: GitRepo, tmp_path: Path) -> None:
    shas, user, server = _partial_user(repo, tmp_path)
    before = snapshot(user)
    with _gone(server):
        res = bisector(user, "run", "--good", shas[0], "--bad", "main", "--probe", "grep -qx ok state.txt")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    err = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(err) == 1 and "partial clone" in err[0] and f"origin (file://{server})" in err[0], res.stderr
    assert snapshot(user) == before
    res = bisector(user, "run", "--good", shas[0], "--bad", "main", "--probe", "grep -qx ok state.txt")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{shas[CULPRIT - 1]} is the first bad commit" in res.stdout
    assert snapshot(user) == before


def test_restore_of_a_pin_in_a_partial_clone_fetches_its_files_or_says_it_cannot(repo: GitRepo, tmp_path: Path) -> None:
    shas, user, server = _partial_user(repo, tmp_path)
    assert bisector(user, "pin", "add", "old", "--rev", shas[1]).returncode == 0
    r = bisector(user, "restore", "old", str(tmp_path / "copy"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "copy" / "state.txt").read_text() == "ok\n" and (tmp_path / "copy" / "n.txt").read_text() == "2\n"
    with _gone(server):
        r = bisector(user, "restore", "old", str(tmp_path / "copy2"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert r.stderr.count("Error:") == 1 and "partial clone" in r.stderr and f"file://{server}" in r.stderr, r.stderr
