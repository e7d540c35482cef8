"""The search loop: verify the bounds, ask the search, materialize, build, probe, journal.

Collaborators are injected (`make_suite`, `workspace_factory`) so tests can drive the loop
with scripted verdicts; events go to a `Handler` so the CLI and other front ends share it.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from bisector.build.run import BuildConfig
from bisector.io.config import load_file_config, probe_specs, table
from bisector.core.errors import BisectorError, BoundsError, ContradictionError, ProbeAbort, UsageError
from bisector.io.git import git, repo_root
from bisector.io.history import Candidates, load_candidates
from bisector.journal.codec import decode_observation
from bisector.journal.writer import JOURNAL_DIR, JournalWriter
from bisector.journal.read import apply_undo, find_session, find_unfinished, journal_dir, read_events
from bisector.run.records import Handler, SessionResult, StepRecord
from bisector.run.plan import RunOptions, environment, frozen_specs, make_search, search_settings
from bisector.run.step import StepOutcome
from bisector.run.executors.slurm import SlurmExecutor, cancel_recorded_jobs
from bisector.core.model import Verdict
from bisector.io.workspace import RepoLock, Workspace, prune_stale, state_dir


def default_suite_factory(specs: list[dict[str, Any]], user_cwd: Path, frozen_dir: Path, stop_early: bool):
    # Imported here: the registry pulls in the built-in probes (which import torch lazily).
    from bisector.probes.registry import make_suite

    return make_suite(specs, user_cwd=user_cwd, frozen_dir=frozen_dir, stop_early=stop_early)


def make_workspace(repo: Path, session_dir: Path, dvc: dict[str, Any] | None = None) -> Workspace:
    """A plain git worktree, or one that also materializes DVC data when the repo uses DVC."""
    if (repo / ".dvc").is_dir():
        from bisector.io.data import DvcWorkspace

        dvc = dvc or {}
        return DvcWorkspace(
            repo,
            session_dir,
            link_type=dvc.get("link_type", "reflink,copy"),
            timeout=dvc.get("timeout"),
            data_paths=dvc.get("data_paths", ()),
            verify=bool(dvc.get("verify", False)),
        )
    return Workspace(repo, session_dir)




class Session:
    """One bisection. `run()` starts it or resumes the unfinished one with the same bounds."""

    def __init__(
        self,
        options: RunOptions,
        handler: Handler | None = None,
        *,
        suite_factory: Callable[..., Any] | None = None,
        workspace_factory: Callable[[Path, Path], Workspace] | None = None,
    ):
        self.options = options
        self.handler = handler or Handler()
        self.suite_factory = suite_factory or default_suite_factory
        self.workspace_factory = workspace_factory
        self.repo = repo_root(options.repo)
        self.state = state_dir(self.repo)
        self.records: list[StepRecord] = []
        self.observed: dict[str, Verdict] = {}
        self._step_times: list[float] = []
        self._replayed_steps: set[int] = set()
        self._next_step = 1
        self.rounds = 0
        self.jobs = max(1, options.jobs)
        self.infra_notes: dict[int, list[str]] = {}

    # ----------------------------------------------------------------- setup
    def _new_session_id(self) -> str:
        """UTC time to the millisecond, then a random tag: ids sort in start order (the latest
        session is the last file), also for sessions started within one second."""
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
        return stamp + "-" + secrets.token_hex(2)

    def _prepare(self) -> tuple[dict[str, Any], bool]:
        """Return the start event (new or from the unfinished journal) and whether we resume."""
        opts = self.options
        unfinished = find_unfinished(self.repo)
        if unfinished is not None:
            start = read_events(unfinished)[0]
            asked = opts.bad is not None or opts.goods
            if not asked or self._same_bounds(start):
                return start, True
            raise UsageError(
                f"an unfinished session {start['session']} exists (bad {start['bad'][:10]}, "
                f"good {', '.join(g[:10] for g in start['goods'])}): resume it with `bisector run`, "
                "or drop it with `bisector reset`"
            )
        if opts.bad is None:
            raise UsageError("no bad revision: pass --bad REV (a commit where the probe fails)")
        if not opts.goods:
            from bisector.io.git import resolve as _resolve
            from bisector.review.pins.store import latest_ancestor_pin

            pin = latest_ancestor_pin(self.repo, _resolve(self.repo, opts.bad, "bad revision"))
            if pin is None:
                raise UsageError(
                    "no good revision: pass --good REV (a commit where the probe passes), or pin one "
                    "with `bisector pin NAME --rev REV`"
                )
            opts.goods = [pin.commit]
            self.handler.on_message(f"No --good given: using pin @{pin.name} ({pin.commit[:10]}), the most recent pin before the bad revision")
        config = load_file_config(self.repo)
        build_table = table(config, "build")
        search_table = table(config, "search")
        build = BuildConfig(
            command=opts.build if opts.build is not None else build_table.get("command"),
            timeout=opts.build_timeout or build_table.get("timeout"),
            on_failure=opts.on_failure or build_table.get("on_failure", "skip"),
            outputs=tuple(build_table.get("outputs", ())),
            cache=bool(build_table.get("cache", True)) and not opts.no_cache,
        )
        specs = probe_specs(config, opts.probe, opts.probe_timeout)
        stop_early = bool(search_table.get("stop_early", True))
        first_parent = opts.first_parent or bool(search_table.get("first_parent", False))
        paths = list(opts.paths) or list(search_table.get("paths", []))
        from bisector.io.git import resolve

        if opts.axis not in ("code", "data"):
            raise UsageError(f"--axis must be code or data, not {opts.axis!r}")
        axis_info = {"axis": opts.axis, "code_rev": None, "data_rev": None, "attribute": opts.attribute}
        candidates = load_candidates(self.repo, opts.bad, opts.goods, first_parent=first_parent, paths=paths)
        if opts.axis == "data":
            if opts.data_rev:
                raise UsageError("--data-rev pins the data while code moves: it does not go with --axis data")
            axis_info["code_rev"] = resolve(self.repo, opts.code_rev, "code revision") if opts.code_rev else candidates.bad
        elif opts.code_rev:
            raise UsageError("--code-rev fixes the code on the data axis: add --axis data")
        elif opts.data_rev:
            axis_info["data_rev"] = resolve(self.repo, opts.data_rev, "data revision")
        if opts.reuse_from:
            axis_info["reuse_from"] = opts.reuse_from
        start_partial = {"bad": candidates.bad, "goods": candidates.goods, "first_parent": first_parent,
                         "paths": paths, **axis_info}
        candidates = self._load_candidates(start_partial)
        settings = search_settings(opts, search_table)
        session_id = self._new_session_id()
        frozen_dir = self.repo / JOURNAL_DIR / "frozen"
        suite = self.suite_factory(specs, Path(os.getcwd()), frozen_dir, stop_early)
        start = {
            "session": session_id,
            "bad": candidates.bad,
            "goods": candidates.goods,
            "merge_bases": candidates.merge_bases,
            "first_parent": first_parent,
            "paths": paths,
            **axis_info,
            "candidates": len(candidates),
            "search": settings,
            "config": {
                "build": build.to_json(),
                "probes": suite.config(),
                "probe_specs": frozen_specs(specs, suite),
                "stop_early": stop_early,
                "file": config,
            },
            "environment": environment(),
            "argv": sys.argv,
        }
        return start, False

    def _load_candidates(self, start: dict[str, Any]) -> Candidates:
        """The search's candidates: commits (code axis) or data revisions (data axis)."""
        if start.get("axis", "code") != "data":
            return load_candidates(
                self.repo, start["bad"], start["goods"], first_parent=start["first_parent"], paths=start["paths"]
            )
        if not (self.repo / ".dvc").is_dir():
            raise UsageError("--axis data needs a DVC repository (no .dvc/ folder here): search the code axis")
        from bisector.io.data import data_revisions

        good = start["goods"][0]
        revs = data_revisions(self.repo, good, start["bad"], start["paths"])
        if not revs:
            raise UsageError(
                f"the DVC-tracked inputs did not change between good {good[:10]} and bad {start['bad'][:10]}: "
                "the cause is in the code, search with --axis code"
            )
        shas = [r.sha for r in revs]  # oldest first
        parents = {sha: ((shas[i - 1],) if i else ()) for i, sha in enumerate(shas)}
        parents = dict(reversed(list(parents.items())))  # newest first, as rev-list
        return Candidates(bad=shas[-1], goods=[good], parents=parents, paths=list(start["paths"]))

    def _same_bounds(self, start: dict[str, Any]) -> bool:
        from bisector.io.git import resolve

        opts = self.options
        try:
            bad = resolve(self.repo, opts.bad, "bad revision") if opts.bad else start["bad"]
            goods = [resolve(self.repo, g, "good revision") for g in opts.goods] or start["goods"]
        except UsageError:
            return False
        return bad == start["bad"] and sorted(set(goods)) == sorted(set(start["goods"]))

    # ------------------------------------------------------------------ run
    def run(self) -> SessionResult:
        lock = RepoLock(self.state / "lock")
        lock.acquire()
        try:
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> SessionResult:
        started = time.monotonic()
        start, resumed = self._prepare()
        self.start = start
        self.frozen_file_config = start["config"].get("file", {})
        self.dvc_settings = dict(table(self.frozen_file_config, "dvc"))
        self.session_id = start["session"]
        self.journal_path = journal_dir(self.repo) / f"{self.session_id}.jsonl"
        cfg = start["config"]
        self.build_config = BuildConfig.from_json(cfg["build"])
        frozen_dir = self.repo / JOURNAL_DIR / "frozen"
        self.suite = self.suite_factory(cfg["probe_specs"], Path(os.getcwd()), frozen_dir, cfg["stop_early"])
        if resumed and self.suite.config() != cfg["probes"]:
            raise UsageError(
                f"the probe inputs of session {self.session_id} changed since it started: "
                "restore them, or drop the session with `bisector reset`"
            )
        self.reusable: dict[str, dict[str, Any]] = {}
        if start.get("reuse_from"):
            from bisector.journal.replay import reusable_observations

            old = find_session(self.repo, start["reuse_from"])
            self.reusable = reusable_observations(
                old, self.suite.config(), build_config=self.build_config.to_json(), repo=self.repo
            )
            if not resumed:
                self.handler.on_message(f"Reusing up to {len(self.reusable)} observations of session {old.id}")
        self.axis = start.get("axis", "code")
        self.code_rev = start.get("code_rev")
        self.pinned_data_rev = start.get("data_rev")
        self.candidates = self._load_candidates(start)
        self.session_dir = self.state / "sessions" / self.session_id
        prune_stale(self.repo, self.state / "sessions")
        # Made before anything is journaled: an executor that cannot start (a missing extra,
        # an unreachable scheduler) must not leave an empty unfinished session behind.
        self.executor = self._make_executor()
        writer = JournalWriter(self.journal_path)
        self.writer = writer
        previous: list[StepRecord] = []
        if resumed:
            previous = [StepRecord.from_json(e) for e in apply_undo(read_events(self.journal_path))]
            writer.append("resume", pid=os.getpid())
        else:
            writer.append("start", **start)
        self.handler.on_start({**start, "resumed": resumed, "journal": str(self.journal_path)})
        self.search = make_search(self.candidates, start.get("search", {}))
        self.noisy = self.search.noise is not None
        self.max_steps = start.get("search", {}).get("max_steps")
        for rec in previous:
            self._remember(rec)
        try:
            self.executor.open(self.candidates.bad)
            result = self._search_loop()
            if result.status == "found" and result.culprit:
                result.attribution = self._attribute(result.culprit)
        except (BoundsError, ContradictionError, ProbeAbort) as exc:
            status = {BoundsError: "bounds", ContradictionError: "contradiction", ProbeAbort: "abort"}[type(exc)]
            result = SessionResult(self.session_id, self.journal_path, status, message=str(exc))
        finally:
            self.executor.close()
            import shutil

            shutil.rmtree(self.session_dir, ignore_errors=True)
        result.resumed = resumed
        result.axis = self.axis
        result.elapsed = time.monotonic() - started
        result.steps = self._counts()
        writer.append(
            "end",
            status=result.status,
            culprit=result.culprit,
            probability=result.probability,
            candidates=result.candidates,
            message=result.message,
            steps=result.steps,
            elapsed=round(result.elapsed, 3),
            attribution=result.attribution,
            rounds=self.rounds,
        )
        writer.close()
        self.handler.on_result(result)
        return result

    def _make_executor(self) -> Any:
        from bisector.run.executors.local import LocalExecutor, parse_executor

        jobs = max(1, self.options.jobs)
        executor_table = table(self.frozen_file_config, "executor")
        cancel_recorded_jobs(self.state)  # Slurm jobs a killed session (kill -9) left behind
        address = parse_executor(self.options.executor or executor_table.get("kind"))
        if address == "slurm":
            return SlurmExecutor(executor_table, self._remote_spec_base(), jobs, self.state, self.handler.on_message)
        if address is not None:
            from bisector.run.executors.dask import DaskExecutor  # needs the `dask` extra

            return DaskExecutor(address, self._remote_spec_base(), jobs=jobs)
        workers = table(self.frozen_file_config, "workers")
        gpus = [str(g) for g in workers.get("gpus", [])]
        slot_env = [{"CUDA_VISIBLE_DEVICES": g} for g in gpus]
        factory = self.workspace_factory or (lambda repo, d: make_workspace(repo, d, self.dvc_settings))
        if jobs == 1:
            make = lambda i: factory(self.repo, self.session_dir)  # noqa: E731
        else:
            make = lambda i: factory(self.repo, self.session_dir / f"slot-{i}")  # noqa: E731
        cache = None
        if self.build_config.cache:
            from bisector.build.cache import BuildCache

            cache = BuildCache.for_repo(self.repo)
        return LocalExecutor(jobs, make, self.suite, self.build_config, slot_env, cache=cache)

    def _remote_spec_base(self) -> dict[str, Any]:
        """What a remote worker needs to rebuild a step from plain data (see step.run_step)."""
        return {
            "repo": str(self.repo),
            "workspace_dir": str(self.session_dir / "remote"),
            "build": self.build_config.to_json(),
            "probe_specs": self.start["config"]["probe_specs"],
            "stop_early": self.start["config"]["stop_early"],
            "user_cwd": os.getcwd(),
            "frozen_dir": str(self.repo / JOURNAL_DIR / "frozen"),
            "env": {},
            "dvc": self.dvc_settings,
            # Workers that do not share this filesystem clone the code from here instead.
            **{k: v for k, v in table(self.frozen_file_config, "executor").items() if k in ("repo_url", "worker_cache")},
        }

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.role] = counts.get(r.role, 0) + 1
        return counts

    def _remember(self, rec: StepRecord) -> None:
        """Feed a step replayed from the journal to the search state."""
        self._replayed_steps.add(rec.step)
        self._next_step = max(self._next_step, rec.step + 1)
        self.records.append(rec)
        self.observed[self._key(rec)] = rec.verdict
        self._step_times.append(rec.duration)
        self._tell(rec)

    def _tell(self, rec: StepRecord) -> None:
        """Give one observation to the search (goods count too under noise: they calibrate it)."""
        if rec.verdict is Verdict.ABORT:
            return
        key = self._key(rec)
        if rec.role == "crossing":
            return
        if key in self.candidates.parents or (self.noisy and key in self.candidates.goods):
            self.search.record(key, rec.verdict)

    def _key(self, rec: StepRecord) -> str:
        """What the search calls this step: the commit, or on the data axis the data revision."""
        return (rec.data_rev or rec.commit) if self.axis == "data" else rec.commit

    def _search_loop(self) -> SessionResult:
        c = self.candidates
        bounds = [(c.bad, "bad-bound", Verdict.BAD)]
        bounds += [(g, "good-bound", Verdict.GOOD) for g in c.goods]
        bounds += [(mb, "merge-base", Verdict.GOOD) for mb in c.merge_bases]
        if getattr(self.suite, "needs_baseline", False):
            # Probes with rules relative to the good bound need its observation first.
            self._round([(g, "good-bound") for g in c.goods[:1] if g not in self.observed])
            self._set_baselines()
        # The bounds are independent: with several workers they are checked in one round.
        first = self._round([(rev, role) for rev, role, _ in bounds if rev not in self.observed])
        if self.noisy:
            # One run decides nothing under noise: bounds are observations like any other,
            # and a bad bound that only failed by chance ends as "no culprit".
            for rec in first:
                if rec.verdict is Verdict.ABORT:
                    raise ProbeAbort(self._abort_message(rec))
                self._tell(rec)
                self._journal_posterior(rec.step)
        else:
            for rev, role, expected in bounds:
                self._check_bound(rev, role, expected)
        while True:
            revs = self.search.next(self.jobs)
            revs = list(dict.fromkeys(revs))
            if not self.noisy:
                revs = [r for r in revs if r not in self.observed]  # never ask the same question twice
            if not revs:
                break
            if self.max_steps is not None and len(self.records) >= self.max_steps:
                break
            self.rounds += 1
            role = {r: ("calibrate" if r in self.candidates.goods or r == self.candidates.bad else "search") for r in revs}
            for rec in self._round([(r, role[r]) for r in revs]):
                if rec.verdict is Verdict.ABORT:
                    raise ProbeAbort(self._abort_message(rec))
                self._tell(rec)
                self._journal_posterior(rec.step)
        r = self.search.result()
        if self.noisy:
            return self._noisy_result(r)
        if r.status != "found" or r.culprit is None:
            return SessionResult(
                self.session_id,
                self.journal_path,
                r.status,
                probability=r.probability,
                candidates=list(r.candidates),
                message=f"{len(r.candidates)} commits remain that could not be told apart (skipped steps)",
            )
        return self._confirm(r.culprit, r.probability)

    def _confirm(self, culprit: str, probability: float) -> SessionResult:
        """The culprit's parents must have been observed good (its own verdict is bad)."""
        if self.axis == "data":
            parents = list(self.candidates.parents.get(culprit, ())) or self.candidates.goods[:1]
        elif self.candidates.paths:
            # History simplified by the pathspec: the rewritten parents are the ones that count.
            parents = list(self.candidates.parents.get(culprit, ()))
        else:
            parents = git(self.repo, "rev-list", "--parents", "-n", "1", culprit).split()[1:]
            if self.candidates.first_parent:
                parents = parents[:1]
        todo = [p for p in parents if self.observed.get(p) is not Verdict.GOOD]
        self._round([(p, "confirm") for p in todo if p not in self.observed])
        for p in todo:
            verdict = self.observed[p]
            if verdict is Verdict.GOOD:
                continue
            if verdict is Verdict.ABORT:
                raise ProbeAbort(self._abort_message(self._record_of(p)))
            return SessionResult(
                self.session_id,
                self.journal_path,
                "not-confirmed",
                culprit=culprit,
                candidates=[culprit, p],
                message=(
                    f"confirmation failed: parent {p[:10]} of {culprit[:10]} is {verdict.value}, "
                    "so the probe is not monotone here (flaky, or more than one change)"
                ),
            )
        return SessionResult(
            self.session_id, self.journal_path, "found", culprit=culprit, probability=probability, candidates=[culprit]
        )

    def _attribute(self, culprit: str) -> dict[str, Any] | None:
        """Code, data or both? When the culprit commit changed both (or when asked), test the
        crossings: parent code + culprit data, and culprit code + parent data."""
        if self.axis != "code" or self.pinned_data_rev or not (self.repo / ".dvc").is_dir():
            return None
        from bisector.io.data import attribution, classify_culprit

        changed = classify_culprit(self.repo, culprit)
        if not (changed["code"] and changed["data"]) and not self.start.get("attribute"):
            which = "data" if changed["data"] and not changed["code"] else "code"
            return {"culprit_is": which, "changed": changed, "tested": False}
        parents = git(self.repo, "rev-list", "--parents", "-n", "1", culprit).split()[1:]
        if not parents:
            return {"culprit_is": "unknown", "changed": changed, "tested": False, "why": "root commit"}
        parent = parents[0]
        pairs = {"parent_code_culprit_data": (parent, culprit), "culprit_code_parent_data": (culprit, parent)}
        done = {(r.commit, r.data_rev): r for r in self.records if r.role == "crossing"}
        todo = [(culprit, "crossing", c, d) for c, d in pairs.values() if (c, d) not in done]
        for rec in self._round(todo):
            done[(rec.commit, rec.data_rev)] = rec
        verdicts = {name: done[pair].verdict for name, pair in pairs.items()}
        which = attribution(verdicts["parent_code_culprit_data"], verdicts["culprit_code_parent_data"])
        return {"culprit_is": which, "changed": changed, "tested": True,
                **{name: v.value for name, v in verdicts.items()}}

    def _set_baselines(self) -> None:
        good = self.candidates.goods[0]
        rec = self._record_of(good)
        taken = self.suite.set_baselines([decode_observation(o) for o in rec.observations])
        if taken:
            self.writer.append("baseline", commit=good, step=rec.step, probes=taken)

    def _journal_posterior(self, step: int) -> None:
        if not self.noisy:
            return
        post = self.search.posterior()
        top = sorted(((p, r) for r, p in post.items() if r is not None), reverse=True)[:5]
        event = {
            "after_step": step,
            "top": [[r, round(p, 6)] for p, r in top],
            "no_culprit": round(post.get(None, 0.0), 6),
            "rates": [round(x, 4) for x in self.search.rates()],
        }
        self.writer.append("posterior", **event)
        self.handler.on_posterior(event)

    def _noisy_result(self, r: Any) -> SessionResult:
        post = self.search.posterior()
        if r.status == "found" and r.culprit is not None:
            return SessionResult(self.session_id, self.journal_path, "found", culprit=r.culprit,
                                 probability=r.probability, candidates=list(r.candidates[:5]))
        if r.status == "no_culprit":
            return SessionResult(
                self.session_id, self.journal_path, "no_culprit", probability=r.probability,
                candidates=list(r.candidates[:5]),
                message=(f"the failures look like noise: P(no culprit) = {r.probability:.3f}; "
                         "the bad bound does not fail reliably"),
            )
        top = ", ".join(f"{c[:10]} {post.get(c, 0):.2f}" for c in r.candidates[:5])
        return SessionResult(
            self.session_id, self.journal_path, "ambiguous" if r.status == "ambiguous" else "undecided",
            probability=r.probability, candidates=list(r.candidates[:5]),
            message=f"no single culprit above the target {self.search.confidence:g}; top candidates: {top}",
        )

    def _record_of(self, key: str) -> StepRecord:
        return next(r for r in reversed(self.records) if self._key(r) == key and r.role != "crossing")

    def _check_bound(self, rev: str, role: str, expected: Verdict) -> None:
        rec = self._record_of(rev)
        if rec.verdict is expected:
            if rev in self.candidates.parents and not self._replayed(rec):
                self.search.record(rev, rec.verdict)
            return
        summary = "; ".join(f"{o['probe']}: {o.get('summary', '')}" for o in rec.observations)
        if not rec.observations:
            summary = f"build {rec.build.get('status')}"
            summary += "; " + rec.notes[0] if rec.notes else ""
        what = {"bad-bound": "bad bound", "good-bound": "good bound", "merge-base": "merge base"}[role]
        if rec.verdict is Verdict.ABORT:
            raise ProbeAbort(self._abort_message(rec))
        if rec.verdict is Verdict.SKIP:
            fix = "fix the build or probe for that commit, or pick another bound"
        elif role == "bad-bound":
            fix = "it is not broken for this probe: pick a broken --bad or check the probe"
        elif role == "good-bound":
            fix = "pick an older good revision or check the probe"
        else:
            fix = "the regression is older than the fork point of the good revision: pick an older good revision"
        raise BoundsError(f"the {what} {rev[:10]} is {rec.verdict.value} ({summary}): {fix}")

    def _replayed(self, rec: StepRecord) -> bool:
        return rec.step in self._replayed_steps

    def _abort_message(self, rec: StepRecord) -> str:
        tail = ""
        for o in rec.observations:
            if o["verdict"] == "abort":
                tail = o.get("evidence", {}).get("log_tail", "")
                break
        if not rec.observations and rec.build.get("status") not in (None, "ok", "none", "cached"):
            msg = f"the build {rec.build['status']} at {rec.commit[:10]} (step {rec.step}) and build.on_failure is abort"
            tail = rec.build.get("tail", "")
        else:
            msg = f"the probe aborted at {rec.commit[:10]} (step {rec.step}); the search stopped"
        if tail:
            msg += ". Log tail: " + " | ".join(tail.splitlines()[-3:])
        return msg

    # ----------------------------------------------------------------- steps
    def _estimate(self) -> tuple[int, int, float | None]:
        left = self.search.remaining()
        est = self.search.estimated_steps()
        times = self._step_times[-9:]
        rounds = -(-est // self.jobs) if self.jobs > 1 else est
        seconds = statistics.median(times) * rounds if times else None
        return left, est, seconds

    def _round(self, todo: Sequence[tuple[str, ...]]) -> list[StepRecord]:
        """Run steps (up to `jobs` at once); journal each as it finishes; retry lost steps once."""
        from bisector.run.executors.local import StepRequest

        if not todo:
            return []
        roles: dict[int, str] = {}
        requests = []
        left, est, secs = self._estimate()
        for item in todo:
            key, role = item[0], item[1]
            if len(item) == 4:
                rev, data_rev = item[2], item[3]  # an explicit (code, data) pair: a crossing
            elif self.axis == "data":
                rev, data_rev = self.code_rev, key
            else:
                rev, data_rev = key, self.pinned_data_rev
            n = self._next_step
            self._next_step += 1
            roles[n] = role
            label = f"{rev[:10]} code + {data_rev[:10]} data" if role == "crossing" and data_rev else key
            self.handler.on_step_start(n, label, role, left, est, secs)
            runs = 1 + sum(1 for r in self.records if r.role != "crossing" and self._key(r) == key)
            # A repeat (noisy search) of a suite that answers the same on the same build must
            # rebuild: the new build (a new training run) is the new sample.
            fresh = runs > 1 and not getattr(self.suite, "repeatable", True)
            requests.append(StepRequest(rev, n, self.session_dir / "logs" / f"step-{n}", data_rev, runs, fresh))
        records = []
        if self.reusable:
            requests = self._reuse(requests, roles, records)
        attempts: dict[int, int] = {}
        while requests:
            retry = []
            for req, outcome in self.executor.run_round(requests):
                if isinstance(outcome, BaseException):
                    if isinstance(outcome, (KeyboardInterrupt, BisectorError)):
                        raise outcome
                    attempts[req.step] = attempts.get(req.step, 0) + 1
                    note = f"infrastructure failure ({type(outcome).__name__}: {str(outcome)[:200]})"
                    if attempts[req.step] < 2:
                        self.infra_notes.setdefault(req.step, []).append(note + "; retried once")
                        retry.append(req)
                        continue
                    outcome = StepOutcome(req.rev, Verdict.SKIP, {"status": "lost"}, [], 0.0, req.data_rev,
                                          notes=[note + "; retried once, then skipped"])
                rec = StepRecord(
                    step=req.step,
                    commit=req.rev,
                    role=roles[req.step],
                    verdict=outcome.verdict,
                    build=outcome.build,
                    observations=outcome.observations,
                    duration=outcome.duration,
                    data_rev=outcome.data_rev,
                    worker=outcome.worker,
                    notes=self.infra_notes.get(req.step, []) + outcome.notes,
                )
                if self._is_undo(rec):
                    self._undo_previous()
                    continue
                self._journal_step(rec, round=self.rounds)
                self._step_times.append(rec.duration)
                records.append(rec)
            requests = retry
        return records

    def _journal_step(self, rec: StepRecord, **extra: Any) -> None:
        self.writer.append("step", **rec.to_json(), **extra)
        self.records.append(rec)
        if rec.role != "crossing":
            self.observed[self._key(rec)] = rec.verdict
        self.handler.on_step_end(rec)

    def _reuse(self, requests: list[Any], roles: dict[int, str], records: list[StepRecord]) -> list[Any]:
        """Steps an earlier session already ran with the same code, data and probe: journal
        its observations (marked `reused_from`) instead of building and probing again."""
        from bisector.journal.replay import find_reusable

        todo = []
        for req in requests:
            old = find_reusable(self.repo, self.reusable, req.rev, req.data_rev)
            key = (req.data_rev or req.rev) if self.axis == "data" else req.rev
            if old is None or key in self.observed:
                todo.append(req)
                continue
            rec = StepRecord(
                step=req.step, commit=req.rev, role=roles[req.step], verdict=Verdict(old["verdict"]),
                build=old.get("build", {}), observations=old.get("observations", []), duration=0.0,
                data_rev=req.data_rev, worker="reused", notes=[f"reused from session {self.start['reuse_from']} step {old['step']}"],
            )
            self._journal_step(rec, reused_from=old["step"])
            records.append(rec)
        return todo

    @staticmethod
    def _is_undo(rec: StepRecord) -> bool:
        return any(o.get("evidence", {}).get("undo") for o in rec.observations)

    def _undo_previous(self) -> None:
        """A person answered `undo`: retract the previous answer and rebuild the search."""
        prev = next((r for r in reversed(self.records) if r.role in ("search", "confirm", "calibrate")), None)
        if prev is None:
            self.handler.on_message("Nothing to undo: the bounds are not undone.")
            return
        self.writer.append("undo", step=prev.step)
        self.records.remove(prev)
        self.handler.on_message(f"Undid step {prev.step} ({prev.commit[:10]} {prev.verdict.value})")
        self.search = make_search(self.candidates, self.start.get("search", {}))
        self.observed = {}
        for r in self.records:
            if r.role != "crossing":
                self.observed[self._key(r)] = r.verdict
            self._tell(r)


def reset(repo_path: Path) -> list[str]:
    """Drop the unfinished session (its journal is kept, marked as reset) and all worktrees."""
    repo = repo_root(repo_path)
    state = state_dir(repo)
    lock = RepoLock(state / "lock")
    lock.acquire()
    try:
        dropped = []
        path = find_unfinished(repo)
        if path is not None:
            w = JournalWriter(path)
            w.append("end", status="reset", culprit=None, probability=0.0, candidates=[], message="dropped by `bisector reset`", steps={}, elapsed=0)
            w.close()
            dropped.append(path.stem)
        removed = prune_stale(repo, state / "sessions")
        import shutil

        shutil.rmtree(state / "sessions", ignore_errors=True)
        return dropped + [str(p) for p in removed]
    finally:
        lock.release()


_make_search = make_search  # the name bisector.journal.replay imports
