"""What a search was asked: the run options, and the plan frozen into the journal from them.

`Plan` is made once per run: from the options and bisector.toml for a new session
(`Plan.new`), from the journal's `start` event on resume (`Plan.from_start`), or for one
step of `pin --verify` (`Plan.for_verify`), so every step is configured the same way.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from bisector.build.run import BuildConfig
from bisector.core.errors import UsageError
from bisector.core.model import Axis, Candidates
from bisector.io.config import load_file_config, probe_specs, table
from bisector.io.confine import confined
from bisector.io.data.choice import choose_materialize
from bisector.io.env import EnvSettings
from bisector.io.git import repo_root, resolve
from bisector.io.history import load_candidates, load_start_candidates
from bisector.io.untracked import untracked_inputs
from bisector.io.state import state_dir
from bisector.journal.logs import session_logs
from bisector.journal.owner import check_owner, owner_marker
from bisector.journal.read import find_unfinished, journal_dir, read_events
from bisector.journal.writer import JOURNAL_DIR, check_state_folders
from bisector.probes.frozen import suite_digest
from bisector.run.flags import (
    environment,
    pinned_bounds,
    changed_flags,
    check_jobs,
    given_flags,
    relocated,
    shell_notes,
)


@dataclass
class RunOptions:
    """What `bisector run` was asked. None means "from bisector.toml" (or a default)."""

    repo: Path = Path(".")
    bad: str | None = None
    goods: list[str] = field(default_factory=list)
    probe: str | None = None
    probe_shell: bool = False  # the probe is a shell string, run by /bin/sh exactly as given
    probe_timeout: float | None = None
    build: str | None = None
    build_timeout: float | None = None
    on_failure: str | None = None
    first_parent: bool = False
    paths: list[str] = field(default_factory=list)
    jobs: int = 1
    executor: str | None = None  # None: local; "dask://HOST:PORT": a Dask cluster
    # Noisy probes (see search.py): a symmetric flip rate, a one-sided flake rate, or learn it.
    noise: float | None = None
    flaky: float | None = None
    learn_noise: bool | None = None
    confidence: float | None = None
    max_steps: int | None = None
    no_cache: bool = False  # rebuild every step even when an identical build is cached
    # What moves: "code" (each commit with its own data, or with --data-rev's data pinned) or
    # "data" (code fixed at code_rev, default the bad bound; DVC-tracked inputs move).
    axis: str = "code"
    code_rev: str | None = None
    data_rev: str | None = None
    attribute: bool = False  # test the crossings even when the culprit changed only code or data
    reuse_from: str | None = None  # a past session whose still-valid observations are reused
    env: str | None = None  # each revision's own environment: none | uv | command (over [env] mode)
    term_old: str | None = None  # the words for good and bad in every message (`--term-old fast`)
    term_new: str | None = None
    data: bool | None = None  # False: --no-data, True: --data; None: [dvc] materialize, else automatic
    offline: bool = False  # never ask a DVC remote (also [dvc] offline = true)
    no_build: bool = False  # no build at all, not even the default `dvc repro`
    trust_bounds: bool = False  # probe neither bound, as `git bisect run`
    probe_from: str | None = None  # "frozen" (today's script, the default) or "commit" (each commit's own)
    untracked: list[str] = field(default_factory=list)  # --with-untracked: files of the checkout every step gets
    pinned_goods: dict[str, dict[str, str]] = field(default_factory=dict)  # good sha -> its pin's record


def search_settings(opts: RunOptions, table_: dict[str, Any]) -> dict[str, Any]:
    """The noise model and stopping rule, from flags over [search] in bisector.toml."""
    noise = opts.noise if opts.noise is not None else table_.get("noise")
    flaky = opts.flaky if opts.flaky is not None else table_.get("flaky")
    if flaky is True:
        flaky = 0.0  # one-sided, rate learned
    if flaky is False:
        flaky = None
    learn = opts.learn_noise if opts.learn_noise is not None else table_.get("learn_noise")
    confidence = opts.confidence if opts.confidence is not None else table_.get("confidence", 0.99)
    for name, value in (("noise", noise), ("flaky", flaky)):
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 0.5):
            raise UsageError(f"{name} must be a rate in [0, 0.5), not {value!r}")
    if not (isinstance(confidence, (int, float)) and 0.5 < confidence < 1):
        raise UsageError(f"confidence must be between 0.5 and 1 (exclusive), not {confidence!r}")
    if learn is None:
        learn = flaky == 0.0
    max_steps = opts.max_steps if opts.max_steps is not None else table_.get("max_steps")
    return {
        "noise": noise,
        "flaky": flaky,
        "learn_noise": bool(learn),
        "confidence": float(confidence),
        "max_steps": max_steps,
        "calibration_runs": int(table_.get("calibration_runs", 3)),
        "noise_floor": float(table_.get("noise_floor", 0.02)),
    }


def frozen_specs(specs: list[dict[str, Any]], suite: Any) -> list[dict[str, Any]]:
    """The specs to rebuild the suite on resume: command probes point at their frozen script."""
    out = []
    probe_configs = suite.config().get("probes", [])
    for spec, cfg in zip(specs, probe_configs):
        spec = dict(spec)
        if spec.get("type", "command") == "command" and "run" in cfg:
            spec["run"] = cfg["run"]
            spec.pop("command", None)
            if cfg.get("place"):
                spec["place"] = cfg["place"]
        out.append(spec)
    return out


def judge_digest(suite: Any, build: BuildConfig) -> str:
    """Which judge gave a verdict: the probe suite's configs (`suite_digest`) and what of the build
    decides the verdict (its command, timeout, failure rule, environment, --no-build). A pin
    verified under another build is not trusted as a good bound without a probe."""
    b = build.to_json()
    return suite_digest({"probes": suite.config().get("probes", []),
                         "build": {k: b.get(k) for k in ("command", "timeout", "on_failure", "env", "disabled")}})


def new_session_id() -> str:
    """UTC time to the millisecond, then a random tag: ids sort in start order (the latest
    session is the last file), also for sessions started within one second."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
    return stamp + "-" + secrets.token_hex(2)


def step_config(config: Mapping[str, Any], opts: RunOptions) -> tuple[BuildConfig, list[dict[str, Any]], bool]:
    """The build, the probe specs and stop_early of a step: flags over bisector.toml."""
    build_table, search_table = table(dict(config), "build"), table(dict(config), "search")
    build = BuildConfig(
        command=None if opts.no_build else opts.build if opts.build is not None else build_table.get("command"),
        disabled=opts.no_build,
        timeout=opts.build_timeout or build_table.get("timeout"),
        on_failure=opts.on_failure or build_table.get("on_failure", "skip"),
        outputs=tuple(build_table.get("outputs", ())),
        cache=bool(build_table.get("cache", True)) and not opts.no_cache,
        env=EnvSettings.from_table(table(dict(config), "env"), opts.env),
    )
    specs = probe_specs(dict(config), opts.probe, opts.probe_timeout, opts.probe_shell)
    if opts.probe_from == "commit":
        specs = [{**s, "probe_from": "commit"} if s.get("type", "command") == "command" else s for s in specs]
    return build, specs, bool(search_table.get("stop_early", True))


SuiteFactory = Callable[[list[dict[str, Any]], Path, Path, bool], Any]


@dataclass
class Plan:
    """One run of a session: its start event (what is journaled and frozen), whether it
    resumes, and the candidates, loaded once."""

    repo: Path
    start: dict[str, Any]
    candidates: Candidates
    resumed: bool = False
    notes: list[str] = field(default_factory=list)  # what the session should say (flags applied on resume)

    # ------------------------------------------------------------ making
    @classmethod
    def open(cls, options: RunOptions, make_suite: SuiteFactory) -> "Plan":
        """The unfinished session's plan when the options name its bounds (or none), else a new one."""
        repo = repo_root(options.repo)
        for folder in ("sessions", "frozen"):  # written below: no committed symlink may lead out
            confined(repo, f"{JOURNAL_DIR}/{folder}")
        check_state_folders(repo)
        unfinished = find_unfinished(repo)
        if unfinished is None:
            file_config = load_file_config(repo)
            check_jobs(options, file_config)
            return cls.new(options, file_config, make_suite)
        start = read_events(unfinished)[0]
        # A journal this user did not start here (committed, copied) is never resumed: resuming
        # runs its build and probe.
        check_owner(repo, start, unfinished)
        start = relocated(repo, start)
        asked = options.bad is not None or options.goods
        if asked and not same_bounds(repo, options, start):
            raise UsageError(
                f"an unfinished session {start['session']} exists (bad {start['bad'][:10]}, "
                f"good {', '.join(g[:10] for g in start['goods'])}): resume it with `bisector run`, "
                "or drop it with `bisector reset`"
            )
        changed = changed_flags(repo, options, start)
        if changed:
            raise UsageError(
                f"the unfinished session {start['session']} was started with other flags "
                f"({'; '.join(changed)}): resume it with `bisector run` alone (-j and --executor may change), "
                "or drop it with `bisector reset` and start again"
            )
        check_jobs(options, dict(start.get("config", {}).get("file") or {}))
        plan = cls.from_start(repo, start, resumed=True)
        if options.jobs != 1 and options.jobs != start.get("jobs", 1):
            plan.notes.append(f"Resuming with -j {options.jobs} (the session started with -j {start.get('jobs', 1)})")
        return plan

    @classmethod
    def from_start(cls, repo: Path, start: Mapping[str, Any], *, resumed: bool = True) -> "Plan":
        return cls(repo, dict(start), load_start_candidates(repo, start), resumed)

    @classmethod
    def new(cls, options: RunOptions, file_config: Mapping[str, Any], make_suite: SuiteFactory) -> "Plan":
        opts = options
        repo = repo_root(opts.repo)
        if opts.bad is None:
            raise UsageError("no bad revision: pass --bad REV (a commit where the probe fails)")
        if not opts.goods:
            raise UsageError(
                "no good revision: pass --good REV (a commit where the probe passes), or pin one "
                "with `bisector pin NAME --rev REV`"
            )
        config = dict(file_config)
        build, specs, stop_early = step_config(config, opts)
        search_table = table(config, "search")
        first_parent = opts.first_parent or bool(search_table.get("first_parent", False))
        paths = list(opts.paths) or list(search_table.get("paths", []))
        if opts.axis not in ("code", "data"):
            raise UsageError(f"--axis must be code or data, not {opts.axis!r}")
        axis_info: dict[str, Any] = {"axis": opts.axis, "code_rev": None, "data_rev": None, "attribute": opts.attribute}
        candidates = load_candidates(repo, opts.bad, opts.goods, first_parent=first_parent, paths=paths)
        if opts.axis == "data":
            if opts.data_rev:
                raise UsageError("--data-rev pins the data while code moves: it does not go with --axis data")
            axis_info["code_rev"] = resolve(repo, opts.code_rev, "code revision") if opts.code_rev else candidates.bad
        elif opts.code_rev:
            raise UsageError("--code-rev fixes the code on the data axis: add --axis data")
        elif opts.data_rev:
            axis_info["data_rev"] = resolve(repo, opts.data_rev, "data revision")
        if opts.reuse_from:
            axis_info["reuse_from"] = opts.reuse_from
        bounds = {"bad": candidates.bad, "goods": list(candidates.goods), "first_parent": first_parent, "paths": paths}
        if opts.axis == "data":
            candidates = load_start_candidates(repo, {**bounds, **axis_info})
        else:
            candidates = dataclasses.replace(candidates, data_rev=axis_info["data_rev"])
        settings = search_settings(opts, search_table)
        dvc_table = table(config, "dvc")
        materialize, why = choose_materialize(
            is_dvc=(repo / ".dvc").is_dir(), asked=opts.data, configured=dvc_table.get("materialize"),
            build_command="" if build.disabled else build.command, has_pipeline=(repo / "dvc.yaml").is_file(), specs=specs)
        choices = {
            "data": {"materialize": materialize, "why": why,
                     "offline": bool(opts.offline or dvc_table.get("offline", False))},
            "bounds": "trust" if opts.trust_bounds else str(search_table.get("bounds", "lazy")),
            "overlap": True,  # -j >= 2: the bad bound's round carries the search's first choice
            "probe_from": opts.probe_from or "frozen",
            "untracked": untracked_inputs(repo, list(opts.untracked) or list(table(config, "workspace").get("untracked", []))),
        }
        suite = make_suite(specs, Path(os.getcwd()), repo / JOURNAL_DIR / "frozen", stop_early)
        session = new_session_id()
        digest = judge_digest(suite, build)
        pinned = pinned_bounds(opts.pinned_goods, candidates.goods, digest, axis_info["data_rev"])
        start = {
            "session": session,
            "bad": candidates.bad,
            "goods": list(candidates.goods),
            "merge_bases": list(candidates.merge_bases),
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
            "jobs": max(1, opts.jobs),
            "flags": given_flags(opts),
            "owner": owner_marker(repo, session),
            "probe_digest": digest,
            **({"pinned_bounds": pinned} if pinned else {}),
            **choices,
        }
        if opts.term_old or opts.term_new:
            start["terms"] = {"old": opts.term_old or "good", "new": opts.term_new or "bad"}
        return cls(repo, start, candidates, False, notes=shell_notes(specs))

    @classmethod
    def for_verify(cls, repo: Path, rev: str, data_rev: str | None = None) -> "Plan":
        """One step at `rev` (with the data of `data_rev`), configured as `bisector run` configures
        its steps: bisector.toml's build (outputs, cache), probes, stop_early and [dvc]."""
        repo = repo_root(repo)
        config = load_file_config(repo)
        build, specs, stop_early = step_config(config, RunOptions(repo=repo))
        start = {
            "session": "pin-verify-" + secrets.token_hex(3),
            "bad": rev,
            "goods": [],
            "data_rev": data_rev,
            "config": {"build": build.to_json(), "probe_specs": specs, "stop_early": stop_early, "file": config},
            "untracked": untracked_inputs(repo, table(config, "workspace").get("untracked", [])),
        }
        return cls(repo, start, Candidates(bad=rev, goods=(), parents={rev: ()}, data_rev=data_rev), False)

    # ----------------------------------------------------------- reading
    @property
    def session(self) -> str:
        return str(self.start["session"])

    @property
    def axis(self) -> Axis:
        return Axis(self.start.get("axis") or "code")

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.start.get("search") or {})

    @property
    def file_config(self) -> dict[str, Any]:
        return dict(self.start["config"].get("file", {}))

    @property
    def dvc(self) -> dict[str, Any]:
        """[dvc] of bisector.toml, with the start event's data choice (absent: materialize, online)."""
        data = self.start.get("data") or {}
        return {**table(self.file_config, "dvc"), **{k: data[k] for k in ("materialize", "offline") if k in data}}

    @property
    def untracked(self) -> list[str]:
        """Files and folders of the user's checkout, not in git, copied into every step."""
        return list(self.start.get("untracked") or [])

    @property
    def build(self) -> BuildConfig:
        return BuildConfig.from_json(self.start["config"]["build"])

    @property
    def probe_specs(self) -> list[dict[str, Any]]:
        """The frozen specs; a command probe's carries the digests of its frozen copies (`frozen`),
        so each copy is verified against what the session froze before it is used."""
        specs = [dict(s) for s in self.start["config"]["probe_specs"]]
        configs = self.start["config"].get("probes") or []
        for spec, cfg in zip(specs, configs if isinstance(configs, list) else []):
            if isinstance(cfg, Mapping) and isinstance(cfg.get("frozen"), Mapping) and cfg["frozen"]:
                spec.setdefault("frozen", dict(cfg["frozen"]))
        return specs

    @property
    def stop_early(self) -> bool:
        return bool(self.start["config"].get("stop_early", True))

    @property
    def journal(self) -> Path:
        return journal_dir(self.repo) / f"{self.session}.jsonl"

    @property
    def frozen_dir(self) -> Path:
        return self.repo / JOURNAL_DIR / "frozen"

    @property
    def logs_dir(self) -> Path:
        """Step logs: kept after the session (journals and reports link to them) until `cache --prune`."""
        return session_logs(self.repo, self.session)

    @property
    def session_dir(self) -> Path:
        return state_dir(self.repo) / "sessions" / self.session

    def make_suite(self, make_suite: SuiteFactory) -> Any:
        return make_suite(self.probe_specs, Path(os.getcwd()), self.frozen_dir, self.stop_early)

    def worker_spec(self) -> dict[str, Any]:
        """What a remote worker needs to rebuild a step from plain data (see `run.step.run_step`)."""
        return {
            "repo": str(self.repo),
            "workspace_dir": str(self.session_dir / "remote"),
            "build": self.build.to_json(),
            "probe_specs": self.probe_specs,
            "stop_early": self.stop_early,
            "user_cwd": os.getcwd(),
            "frozen_dir": str(self.frozen_dir),
            "env": {},
            "dvc": self.dvc,
            "untracked": self.untracked,
            # The step marker (io.process): a worker on this machine marks its step processes as
            # local steps are marked, so the end of the run (and the next start) kills what they left.
            "marker": {"session": self.session, "state": str(state_dir(self.repo))},
            # Workers that do not share this filesystem clone the code from here instead.
            **{k: v for k, v in table(self.file_config, "executor").items() if k in ("repo_url", "worker_cache")},
        }


def same_bounds(repo: Path, opts: RunOptions, start: Mapping[str, Any]) -> bool:
    """Whether the options name the bounds of `start` (missing ones count as the same)."""
    try:
        bad = resolve(repo, opts.bad, "bad revision") if opts.bad else start["bad"]
        goods = [resolve(repo, g, "good revision") for g in opts.goods] or start["goods"]
    except UsageError:
        return False
    return bad == start["bad"] and sorted(set(goods)) == sorted(set(start["goods"]))
