"""A worktree that also materializes DVC data: code revision C with the data of revision D.

Per step (see docs/dvc.md): `git checkout --force` + `git clean` (the base Workspace), then,
for the data axis, overlay the data-source `.dvc` files of D (never D's `dvc.lock`), then
`dvc fetch` if the cache lacks an object, then `dvc checkout --force`; failing: find out why
ourselves (DVC's message reads the same for five causes) and raise DataUnavailable.

Invariant: the user's checkout is never written, and the user's cache only gains objects
(DVC writes new outputs and fetched objects there); with the default link type `reflink,copy`
no build can change an existing cache object.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

from bisector.io.data.causes import (
    CHECKOUT_FAILED,
    CORRUPTED,
    NOT_COMBINABLE,
    DataUnavailable,
    diagnose,
    fetch_failed,
    remote_problem,
)
from bisector.io.data.dvccli import (
    DEFAULT_LINK_TYPE,
    UserDvcConfig,
    dvc_env,
    dvc_executable,
    failed_targets,
    parse_link_type,
    read_user_config,
    run_dvc,
    strip_ansi,
    write_config_local,
)
from bisector.io.data.files import (
    DataInput,
    InputReader,
    data_source_files,
    declared_outputs,
    dvc_tree_files,
    dvcfile_inputs,
    inputs_at,
    is_lockfile,
    is_pipeline,
    load_yaml,
    lock_output_inputs,
    matches_paths,
    read_worktree_dvcfile,
    uncached_outputs,
)
from bisector.core.errors import UsageError
from bisector.io.data.placing import InPlace, corrupted_object, place_input
from bisector.io.git import git, git_ok
from bisector.io.workspace import Workspace

def has_dvc(repo: Path, rev: str) -> bool:
    """Whether commit `rev` is a DVC commit (`.dvc/config` committed); earlier ones are code-only."""
    return git_ok(repo, "cat-file", "-e", f"{rev}:.dvc/config")


def default_build_command(workspace_path: Path) -> str | None:
    """`dvc repro` where the checkout has a `dvc.yaml` (never `--allow-missing`), else None."""
    return "dvc repro" if (Path(workspace_path) / "dvc.yaml").is_file() else None


class DvcWorkspace(Workspace):
    """A Workspace that shares the user's DVC cache and can pair code C with data D.

    `link_type` is DVC's `cache.type` for the worktree. The default `reflink,copy` never lets
    a build touch the user's cache. `hardlink`/`symlink` save the copy, but a build that
    writes a data file in place then silently rewrites the user's cache object (DVC never
    re-verifies objects): opt in only for builds known not to write their inputs.

    After each `checkout`, `step_info` describes what was done (for the journal).
    """

    keep = (".dvc/config.local", ".dvc/tmp")

    def __init__(
        self,
        repo: Path,
        session_dir: Path,
        *,
        link_type: str | Sequence[str] = DEFAULT_LINK_TYPE,
        timeout: float | None = None,
        data_paths: Sequence[str] = (),
        verify: bool = False,
        offline: bool = False,
        untracked: Sequence[str] = (),
    ):
        super().__init__(repo, session_dir, untracked=untracked)
        # None: the remote may be asked; else why it is not asked again in this session
        # ("--offline", "unreachable: ..." from the check before the first fetch or a failed fetch).
        self.offline: str | None = "--offline" if offline else None
        self._remote_checked = False
        # verify: hash every cache object a step's inputs use (once per session) before the
        # checkout. DVC never re-verifies objects, so a corrupted one is otherwise used as is.
        self.verify = verify
        self._verified: set[Path] = set()
        self.link_types = parse_link_type(link_type)
        self.timeout = timeout  # per dvc command (checkout, fetch)
        self.data_paths = tuple(data_paths)  # the data axis' inputs: overlay only these (all when empty)
        self.site_cache_dir = session_dir / "dvc-site"
        self.is_dvc = (Path(repo) / ".dvc").is_dir()
        self.user: UserDvcConfig | None = None
        self.data_rev: str | None = None
        self.step_info: dict[str, Any] = {}
        # Data-source .dvc files now in the worktree -> the revision they come from.
        self._sources: dict[str, str] = {}
        self._outputs: dict[str, DataInput] = {}  # stage outputs of the worktree's dvc.lock files
        self._declared: set[str] = set()  # every output its dvc.yaml files declare
        self._unfetchable: set[str] = set()  # hashes a `dvc fetch` of this session could not bring
        self._last_fetch: tuple[str, int] = ("", 0)  # output and exit code of the last `dvc fetch`
        self._pending: str | None = None  # the revision whose data a deferred checkout left to do
        self._in_place = InPlace(self.path)  # inputs a checkout wrote that still hold their bytes

    # ------------------------------------------------------------ lifecycle
    def open(self, first_rev: str) -> None:
        """Create the worktree and, in a DVC repo, its `.dvc/config.local`. Data comes with `checkout`."""
        if self.is_dvc:
            dvc_executable()  # fail before any work when the user's DVC is not installed
            self.user = read_user_config(self.repo)
        super().open(first_rev)
        if self.user is not None:
            self.site_cache_dir.mkdir(parents=True, exist_ok=True)
            write_config_local(self.path / ".dvc" / "config.local", self.user, self.link_types, self.site_cache_dir)

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.site_cache_dir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """Environment for dvc commands and for the build in this workspace (pass it to run_build)."""
        return {**super().env(), **dvc_env(self.site_cache_dir)}

    # ---------------------------------------------------------------- step
    def checkout(self, rev: str, data_rev: str | None = None, *, defer_data: bool = False) -> None:
        """Make the worktree code `rev` with the data of `data_rev` (default: `rev`'s own data).

        With `defer_data`, only the code and the `.dvc` files are put in place: the caller
        then calls `materialize` (a step does, once it knows whether the build cache holds its
        outputs). Raises DataUnavailable when an input cannot be had, or when `rev` or `data_rev`
        predates `dvc init` while the other does not (NOT_COMBINABLE). A commit before
        `dvc init` alone is code-only: no dvc call at all.
        """
        self._keep_revs = [r for r in (rev, data_rev) if r]
        self._pending = None
        super().checkout(rev)
        self.data_rev = None
        self._sources, self._outputs = {}, {}
        self.step_info = {"dvc": False}
        if self.user is None or not has_dvc(self.repo, rev):
            if data_rev not in (None, rev):
                raise DataUnavailable(".", rev, NOT_COMBINABLE, "this code revision predates `dvc init`",
                                      f"it cannot take the data of {data_rev[:10]}")
            return
        reader = InputReader(self.repo)
        files = dvc_tree_files(self.repo, rev)
        self._sources = {p: rev for p in data_source_files(files, reader)}
        uncached = {o for p, oid in files.items() if is_pipeline(p) for o in uncached_outputs(p, reader.doc(oid))}
        # Outputs of stages that were never run (no dvc.lock entry): `dvc repro` makes them.
        self._declared = {o for p, oid in files.items() if is_pipeline(p) for o in declared_outputs(p, reader.doc(oid))}
        self._outputs = {
            o.path: o for p, oid in files.items() if is_lockfile(p)
            for o in lock_output_inputs(p, reader.doc(oid)) if o.path not in uncached
        }
        info: dict[str, Any] = {"dvc": True, "data_rev": None}
        if data_rev is not None and data_rev != rev:
            info.update(self._overlay(data_rev, reader))
            self.data_rev = data_rev
            info["data_rev"] = data_rev
        self.step_info = info
        self._pending = rev
        if not defer_data:
            self.materialize()

    def keep_paths(self, rev: str) -> list[str]:
        """The data inputs of the step's revisions survive `git clean -x`: `dvc checkout --force`
        then rewrites only what changed, instead of copying the whole dataset every step.
        Stage outputs (models, metrics) are still removed, so a build never sees stale ones."""
        if self.user is None:
            return []
        keep: set[str] = set()
        for r in getattr(self, "_keep_revs", [rev]):
            if has_dvc(self.repo, r):
                keep.update(inputs_at(self.repo, r))
        return sorted(keep)

    def _overlay(self, data_rev: str, reader: InputReader) -> dict[str, Any]:
        """Replace the data-source `.dvc` files by `data_rev`'s: exactly its set, nothing else
        (restricted to `data_paths` when given). Never `data_rev`'s dvc.lock."""
        if not has_dvc(self.repo, data_rev):
            raise DataUnavailable(".", data_rev, NOT_COMBINABLE, "this data revision predates `dvc init`",
                                  "pick data revisions from `data_revisions`")
        files = dvc_tree_files(self.repo, data_rev)
        theirs = [p for p in data_source_files(files, reader) if self._on_axis(p, reader.doc(files[p]))]
        ours = [p for p in self._sources if self._on_axis(p, _read_yaml(self.path / p))]
        removed = sorted(set(ours) - set(theirs))
        for p in removed:
            (self.path / p).unlink(missing_ok=True)
            del self._sources[p]
        for p in theirs:
            target = self.path / p
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(git(self.repo, "cat-file", "blob", files[p]))
            self._sources[p] = data_rev
        return {"overlaid": theirs, "removed": removed}

    def _on_axis(self, dvcfile: str, doc: Any) -> bool:
        return matches_paths([dvcfile, *dvcfile_inputs(dvcfile, doc)], self.data_paths)

    # ------------------------------------------------- data materialization
    def materialize(self, outputs: bool = True, fetch_outputs: bool = False) -> None:
        """Put the data of the last (deferred) `checkout` in place (a no-op when there is none):
        `outputs=False` where the build cache or `dvc repro` restores the stage outputs: only
        the data inputs not already in place (`InPlace`) are put there, so a warm step whose
        inputs did not change runs no dvc command at all. Raises DataUnavailable."""
        rev, self._pending = self._pending, None
        if rev is None:
            return
        self.step_info.update(self._materialize(rev, outputs, fetch_outputs))
        if self.offline:
            self.step_info["offline"] = self.offline

    def _place(self, i: DataInput) -> bool:
        return self._in_cache(i) and place_input(self.path, i, self._objects(i), self.link_types, self._verified)

    def _materialize(self, rev: str, outputs: bool = True, fetch_outputs: bool = False) -> dict[str, Any]:
        """`dvc checkout --force`, with a `dvc fetch` of the absent objects first.

        Usually one dvc call (~0.4 s); two when something must be fetched. Objects a fetch
        could not bring are remembered and not fetched again in this session. Without
        `outputs`, only the data inputs not in place are put there: placed from the cache, else
        checked out (their `.dvc` files as targets); no dvc call when none is missing
        (`info["checkout"]`: all | inputs | none). `fetch_outputs`: the stage outputs' absent
        objects are fetched all the same, for `dvc repro` to check out instead of rerunning.
        """
        env = self.env()
        info: dict[str, Any] = {"fetched": False}
        inputs = self.inputs()
        if outputs:
            wanted = fetch = {**self._outputs, **inputs}
        else:
            wanted = {p: i for p, i in inputs.items() if not self._in_place.holds(i)}
            fetch = {**(self._outputs if fetch_outputs else {}), **wanted}
        absent = [i for i in fetch.values() if not self._in_cache(i) and i.hash not in self._unfetchable]
        if absent:
            self._fetch(env, fetch, info, [i.path for i in absent])
        if self.verify:
            self._verify_objects(inputs.values(), rev)
        if not outputs:
            placed = [p for p, i in wanted.items() if self._place(i)]
            wanted = {p: i for p, i in wanted.items() if p not in placed}
            if placed:
                info["placed"] = placed
            if not wanted:
                self._in_place.record(inputs.values())
                info["checkout"] = "none"
                return info
        targets = [] if outputs else sorted({i.source for i in wanted.values()})
        info["checkout"] = "all" if outputs else "inputs"
        self._in_place.forget()
        res = run_dvc(self.path, "checkout", "--force", *targets, env=env, timeout=self.timeout)
        if res.returncode != 0 and not info["fetched"] and any(self._objects(i) is None for i in wanted.values()):
            # Hashes we cannot look up in the cache (cloud-versioned outputs): fetch and retry.
            self._fetch(env, wanted, info, [i.path for i in wanted.values() if self._objects(i) is None])
            res = run_dvc(self.path, "checkout", "--force", *targets, env=env, timeout=self.timeout)
        if res.returncode == 0:
            self._in_place.record(self.inputs().values())
            return info
        fetch_out, fetch_rc = self._last_fetch
        failed = failed_targets(res.stdout + res.stderr)
        bad = [i for i in self.inputs().values() if i.path in failed or not self._in_cache(i)]
        if bad:
            raise self._diagnose(bad[0], fetch_out, fetch_rc)
        # A stage output that is in the cache and still failed: a link problem, not missing data.
        unlinked = [o for p, o in self._outputs.items() if p in failed and self._in_cache(o)]
        if unlinked:
            raise self._diagnose(unlinked[0], fetch_out, fetch_rc)
        # Stage outputs that are nowhere are fine: the build (dvc repro) makes them again.
        if failed and all(_under(f, [*self._outputs, *self._declared]) for f in failed):
            info["missing_outputs"] = sorted(failed)
            self._in_place.record(self.inputs().values())
            return info
        last = (strip_ansi(res.stderr).strip().splitlines() or [f"exit {res.returncode}"])[-1]
        raise DataUnavailable(".", rev, CHECKOUT_FAILED, last, "run `dvc checkout` in a checkout of it to see why")

    def _verify_objects(self, inputs: Any, rev: str) -> None:
        """Each cache object's md5 must be its name (DVC 3 layout); raise CORRUPTED if not."""
        for i in inputs:
            problem = corrupted_object(i, self._objects(i) or [], self._verified)
            if problem:
                raise DataUnavailable(i.path, self._sources.get(i.source, rev), CORRUPTED, problem,
                                      "delete that object and run `dvc fetch` (or `dvc push` it again from a good copy)")

    def _fetch(self, env: dict[str, str], wanted: dict[str, DataInput], info: dict[str, Any],
               targets: Sequence[str] = ()) -> None:
        """`dvc fetch` of `targets` (the paths whose objects are absent; all when empty), unless
        offline. Before the first one, a cheap reachability check of the remote; an unreachable
        remote or a failed fetch turns the session offline (journaled in the step's
        `data.offline`): no remote is asked again."""
        if self.offline is None and not self._remote_checked:
            self._remote_checked = True
            assert self.user is not None
            remote = self._remote()
            why = remote_problem(remote[1], self.user.remotes.get(remote[0])) if remote else "no remote configured"
            if why:
                self._go_offline(f"unreachable: {why}" if remote else why, info)
        if self.offline is not None:
            return
        res = run_dvc(self.path, "fetch", *sorted(set(targets)), env=env, timeout=self.timeout)
        if targets and res.returncode != 0 and "does not exist as an output" in strip_ansi(res.stdout + res.stderr):
            res = run_dvc(self.path, "fetch", env=env, timeout=self.timeout)  # a target DVC cannot resolve
        self._last_fetch = (strip_ansi(res.stdout + res.stderr), res.returncode)
        if res.returncode == 0:  # the remote answered: what is still absent is not there
            self._unfetchable.update(i.hash for i in wanted.values() if not self._in_cache(i))
        info["fetched"] = True
        why = fetch_failed(*self._last_fetch)
        if why:
            self._go_offline(why, info)

    def _go_offline(self, why: str, info: dict[str, Any]) -> None:
        self.offline = why
        info["offline"] = why

    # ------------------------------------------------------------ queries
    def inputs(self) -> dict[str, DataInput]:
        """The data inputs declared by the data-source `.dvc` files now in the worktree."""
        found: dict[str, DataInput] = {}
        for rel in self._sources:
            found.update(read_worktree_dvcfile(self.path / rel, rel))
        return found

    def data_source_files(self) -> list[str]:
        """The data-source `.dvc` files now in the worktree (overlaid ones included)."""
        return sorted(self._sources)

    def _objects(self, i: DataInput) -> list[Path] | None:
        """Cache paths of an input's objects (a directory's manifest and entries); None if unknown."""
        assert self.user is not None
        kind, _, value = i.hash.partition(":")
        if kind != "md5":
            return None
        root = self.user.cache_dir if i.legacy else self.user.cache_dir / "files" / "md5"
        paths = [root / value[:2] / value[2:]]
        if i.is_dir and paths[0].is_file():
            try:
                entries = json.loads(paths[0].read_text())
                paths += [root / e["md5"][:2] / e["md5"][2:] for e in entries]
            except (OSError, ValueError, KeyError, TypeError):
                pass
        return paths

    def _in_cache(self, i: DataInput) -> bool:
        objs = self._objects(i)
        return objs is None or all(p.is_file() for p in objs)

    def _diagnose(self, i: DataInput, fetch_output: str, fetch_rc: int) -> DataUnavailable:
        """Why input `i` could not be checked out (see `causes.diagnose`)."""
        assert self.user is not None
        return diagnose(
            path=i.path, rev=self._sources.get(i.source, self.current or "?"), digest=i.hash.partition(":")[2],
            source=i.source, in_cache=self._in_cache(i), link_types=self.link_types,
            cache_dir=self.user.cache_dir, workspace=self.path, remote=self._remote(), offline=self.offline,
            fetch_output=fetch_output, fetch_rc=fetch_rc, env=self.env(),
        )

    def _remote(self) -> tuple[str, str] | None:
        """(name, url) of the default remote: the user's, else the one committed at this revision."""
        assert self.user is not None
        name = self.user.default_remote
        url = self.user.remote_url(name) if name else None
        return (str(name), url) if url else self._worktree_remote()

    def _worktree_remote(self) -> tuple[str, str] | None:
        """The default remote of the committed `.dvc/config` at this revision, resolved from the worktree."""
        try:
            conf = read_user_config(self.path)
        except UsageError:
            return None
        url = conf.remote_url()
        return (conf.default_remote or "?", url) if url else None


def _read_yaml(path: Path) -> Any:
    try:
        return load_yaml(path.read_text())
    except OSError:
        return None


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

