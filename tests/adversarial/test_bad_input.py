"""Bad input, table-driven: config, CLI arguments, review commands, repository shapes, misbehaving
probes and hostile content. Each case: no traceback, the documented exit code, one `Error:` line
naming the problem, the user's checkout unchanged, no canary, no process left (tests/fixtures/oneline.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cli import CliResult
from tests.fixtures.oneline import Case, Ctx, ids, run_case

RUN = ("run", "--good", "{good}", "--bad", "main", "--probe", "{probe}")


def toml(text: str, name: str = "bisector.toml"):
    def setup(ctx: Ctx) -> None:
        ctx.write(name, text)
        subprocess.run(["git", "-C", str(ctx.repo), "add", name], check=True)
        subprocess.run(["git", "-C", str(ctx.repo), "commit", "-qm", "config"], check=True)
    return setup


# ----------------------------------------------------------------------------- config
CONFIG = [
    ('first-parent-no', '[search]\nfirst_parent = "no"\n', "[search] first_parent must be a boolean"),
    ('stop-early-no', '[search]\nstop_early = "no"\n', "[search] stop_early must be a boolean"),
    ('paths-string', '[search]\npaths = "src"\n', "[search] paths must be a list"),
    ('paths-int', '[search]\npaths = 5\n', "[search] paths must be a list"),
    ('paths-ints', '[search]\npaths = [1, 2]\n', "[search] paths[0] must be a string"),
    ('typo-key', '[search]\nfirstparent = true\n', "did you mean `first_parent`"),
    ('typo-section', '[serch]\nfirst_parent = true\n', "unknown section [serch]"),
    ('unknown-key', '[build]\ncolour = "red"\n', "unknown key `colour` in [build]"),
    ('build-command-int', '[build]\ncommand = 5\n', "[build] command must be a string"),
    ('build-timeout-negative', '[build]\ntimeout = -1\n', "[build] timeout must be a number > 0"),
    ('build-timeout-zero', '[build]\ntimeout = 0\n', "[build] timeout must be a number > 0"),
    ('build-timeout-inf', '[build]\ntimeout = inf\n', "[build] timeout must be a finite number, not inf"),
    ('build-timeout-nan', '[build]\ntimeout = nan\n', "[build] timeout must be a number > 0"),
    ('build-timeout-string', '[build]\ntimeout = "10"\n', "[build] timeout must be a number"),
    ('build-on-failure', '[build]\non_failure = "maybe"\n', "[build] on_failure must be one of abort, bad, skip"),
    ('build-outputs-string', '[build]\noutputs = "model.pt"\n', "[build] outputs must be a list"),
    ('build-cache-string', '[build]\ncache = "yes"\n', "[build] cache must be a boolean"),
    ('build-not-table', 'build = "make"\n', "[build] must be a table"),
    ('max-steps-string', '[search]\nmax_steps = "x"\n', "[search] max_steps must be an integer"),
    ('max-steps-zero', '[search]\nmax_steps = 0\n', "[search] max_steps must be an integer >= 1"),
    ('noise-high', '[search]\nnoise = 0.7\n', "[search] noise must be a number >= 0 and < 0.5"),
    ('flaky-string', '[search]\nflaky = "x"\n', "[search] flaky must be"),
    ('learn-noise-string', '[search]\nlearn_noise = "yes"\n', "[search] learn_noise must be a boolean"),
    ('confidence-one', '[search]\nconfidence = 1\n', "[search] confidence must be a number > 0.5 and < 1"),
    ('calibration-zero', '[search]\ncalibration_runs = 0\n', "[search] calibration_runs must be an integer >= 1"),
    ('gpus-int', '[workers]\ngpus = 5\n', "[workers] gpus must be a list"),
    ('gpus-float', '[workers]\ngpus = [0, 1.5]\n', "[workers] gpus[1] must be an integer or a string"),
    ('dvc-verify-int', '[dvc]\nverify = 1\n', "[dvc] verify must be a boolean"),
    ('dvc-timeout-negative', '[dvc]\ntimeout = -3\n', "[dvc] timeout must be a number > 0"),
    ('dvc-timeout-inf', '[dvc]\ntimeout = inf\n', "[dvc] timeout must be a finite number"),
    ('noise-inf', '[search]\nnoise = inf\n', "[search] noise must be a number >= 0 and < 0.5"),
    ('env-mode', '[env]\nmode = "conda"\n', "[env] mode must be one of command, none, uv"),
    ('executor-max-jobs-zero', '[executor]\nmax_jobs = 0\n', "[executor] max_jobs must be an integer >= 1"),
    ('executor-cores-string', '[executor]\ncores = "x"\n', "[executor] cores must be an integer"),
    ('executor-typo', "[executor]\nrepo-url = 'x'\n", "did you mean `repo_url`"),
    ('invalid-toml', '[build\ncommand = 1\n', "bisector.toml: invalid TOML"),
    ('probes-string', "probes = 'check.sh'\n", "[[probes]] must be a list of tables"),
    ('probes-type-int', "[[probes]]\ntype = 3\n", "[[probes]] #1 type must be a string"),
    ('data-not-table', "data = 5\n", "[data] must be a table"),
    ('non-utf8', b"[build]\ncommand = '\xff\xfe'\n", "bisector.toml: not UTF-8"),
]
CONFIG_CASES = [Case(f"config-{name}", RUN, 2, frag, toml(text.decode("latin-1") if isinstance(text, bytes) else text))
                for name, text, frag in CONFIG if not isinstance(text, bytes)]
CONFIG_CASES += [Case(f"config-{name}", RUN, 2, frag, lambda ctx, t=text: ctx.write("bisector.toml", t))
                 for name, text, frag in CONFIG if isinstance(text, bytes)]

# The probe's own keys, given without --probe so the file's probe is used.
PROBE_TABLE = [
    ('probe-timeout-string', '[probe]\nrun = "true"\ntimeout = "x"\n', "probe timeout must be a number of seconds > 0"),
    ('probe-timeout-negative', '[probe]\nrun = "true"\ntimeout = -5\n', "probe timeout must be a number of seconds > 0"),
    ('probe-timeout-nan', '[probe]\nrun = "true"\ntimeout = nan\n', "probe timeout must be a number of seconds > 0"),
    ('probe-timeout-inf', '[probe]\nrun = "true"\ntimeout = inf\n', "probe timeout must be a number of seconds > 0"),
    ('probe-run-int', '[probe]\nrun = 5\n', "a command probe needs `run"),
    ('probe-type-unknown', '[probe]\ntype = "nosuch"\n', "unknown probe type 'nosuch'"),
    ('probe-shell-string', '[probe]\nrun = "true"\nshell = "yes"\n', "probe `shell` must be true or false"),
    ('probe-repeatable-string', '[probe]\nrun = "true"\nrepeatable = "no"\n', "probe `repeatable` must be true or false"),
    ('probe-key-typo', '[probe]\nrun = "true"\ntiemout = 3\n', "did you mean `timeout`"),
    ('probe-on-timeout', '[probe]\nrun = "true"\non_timeout = "maybe"\n', "on_timeout must be one of"),
    ('probe-name-spaces', '[probe]\nrun = "true"\nname = "my probe"\n', "without spaces"),
    ('probe-missing-script', '[probe]\nrun = "./nosuch.sh"\n', "probe command not found: ./nosuch.sh"),
    ('probes-duplicate-names', '[[probes]]\ntype = "command"\nrun = "true"\n[[probes]]\ntype = "command"\nrun = "true"\n',
     "two probes are named 'command'"),
]
CONFIG_CASES += [Case(f"config-{name}", ("run", "--good", "{good}", "--bad", "main"), 2, frag, toml(text))
                 for name, text, frag in PROBE_TABLE]
CONFIG_CASES += [
    Case("config-pyproject-max-steps", RUN, 2, "pyproject.toml: [tool.bisector.search] max_steps must be an integer >= 1",
         toml("[project]\nname = 'x'\n[tool.bisector.search]\nmax_steps = 0\n", "pyproject.toml")),
    Case("config-pyproject-not-table", RUN, 2, "pyproject.toml: [tool.bisector] must be a table",
         toml("[tool]\nbisector = 5\n", "pyproject.toml")),
    Case("config-max-jobs-exceeded", (*RUN, "-j", "3"), 2, "-j 3 is more than 2 parallel steps ([executor] max_jobs)",
         toml("[executor]\nmax_jobs = 2\n")),
]


# ------------------------------------------------------------------------ CLI arguments
def _dir_probe(ctx: Ctx) -> None:
    (ctx.tmp / "probedir").mkdir()


def _plain_file_probe(ctx: Ctx) -> None:
    p = ctx.tmp / "check.sh"
    p.write_text("#!/bin/sh\nexit 0\n")
    p.chmod(0o644)


def _a_file(ctx: Ctx) -> None:
    (ctx.tmp / "afile").write_text("x\n")


BASE = ("run", "--good", "{good}", "--bad", "main")
ARGS = [
    ("jobs-zero", (*RUN, "-j", "0"), 2, "Invalid value for '-j'"),
    ("jobs-negative", (*RUN, "-j", "-1"), 2, "Invalid value for '-j'"),
    ("jobs-word", (*RUN, "-j", "x"), 2, "Invalid value for '-j'"),
    ("jobs-huge", (*RUN, "-j", "1000"), 2, "-j 1000 is more than"),
    ("timeout-negative", (*RUN, "--timeout", "-1"), 2, "Invalid value for '--timeout'"),
    ("timeout-zero", (*RUN, "--timeout", "0"), 2, "Invalid value for '--timeout'"),
    ("timeout-nan", (*RUN, "--timeout", "nan"), 2, "Invalid value for '--timeout'"),
    ("timeout-inf", (*RUN, "--timeout", "inf"), 2, "Invalid value for '--timeout'"),
    ("timeout-word", (*RUN, "--timeout", "soon"), 2, "Invalid value for '--timeout'"),
    ("timeout-huge", (*RUN, "--timeout", "1e300"), 2, "Invalid value for '--timeout'"),
    ("build-timeout-negative", (*RUN, "--build-timeout", "-5"), 2, "Invalid value for '--build-timeout'"),
    ("build-timeout-nan", (*RUN, "--build-timeout", "NaN"), 2, "Invalid value for '--build-timeout'"),
    ("build-timeout-zero", (*RUN, "--build-timeout", "0"), 2, "Invalid value for '--build-timeout'"),
    ("noise-high", (*RUN, "--noise", "0.7"), 2, "Invalid value for '--noise'"),
    ("noise-negative", (*RUN, "--noise", "-0.1"), 2, "Invalid value for '--noise'"),
    ("noise-nan", (*RUN, "--noise", "nan"), 2, "noise must be a rate in [0, 0.5), not nan"),
    ("flaky-high", (*RUN, "--flaky", "0.6"), 2, "Invalid value for '--flaky'"),
    ("confidence-one", (*RUN, "--confidence", "1"), 2, "Invalid value for '--confidence'"),
    ("confidence-low", (*RUN, "--confidence", "0.2"), 2, "Invalid value for '--confidence'"),
    ("max-steps-zero", (*RUN, "--max-steps", "0"), 2, "Invalid value for '--max-steps'"),
    ("max-steps-word", (*RUN, "--max-steps", "x"), 2, "Invalid value for '--max-steps'"),
    ("axis-unknown", (*RUN, "--axis", "time"), 2, "Invalid value for '--axis'"),
    ("on-failure-unknown", (*RUN, "--on-failure", "maybe"), 2, "Invalid value for '--on-failure'"),
    ("env-unknown", (*RUN, "--env", "conda"), 2, "Invalid value for '--env'"),
    ("unknown-option", (*RUN, "--nosuch"), 2, "No such option '--nosuch'"),
    ("probe-dir", (*BASE, "--probe", "{tmp}/probedir"), 2, "probe command is not a file"),
    ("probe-missing", (*BASE, "--probe", "./missing.sh"), 2, "probe command not found: ./missing.sh"),
    ("probe-not-on-path", (*BASE, "--probe", "no-such-program --x"), 2, "probe command not found: no-such-program"),
    ("probe-not-executable", (*BASE, "--probe", "{tmp}/check.sh"), 2, "not executable"),
    ("probe-empty", (*BASE, "--probe", ""), 2, "no probe"),
    ("probe-unparsable", (*BASE, "--probe", "'unterminated"), 2, "cannot parse the probe command"),
    ("probe-and-probe-shell", (*RUN, "--probe-shell", "true"), 2, "--probe and --probe-shell both"),
    ("probe-shell-empty", (*BASE, "--probe-shell", " "), 2, "the probe command is empty"),
    ("no-probe", BASE, 2, "no probe"),
    ("good-unknown", ("run", "--good", "nosuchrev", "--bad", "main", "--probe", "{probe}"), 2, "unknown good revision: nosuchrev"),
    ("bad-unknown", ("run", "--good", "{good}", "--bad", "v9.9", "--probe", "{probe}"), 2, "unknown bad revision: v9.9"),
    ("good-equals-bad", ("run", "--good", "main", "--bad", "{bad}", "--probe", "{probe}"), 2, "good and bad are the same commit"),
    ("swapped", ("run", "--good", "main", "--bad", "{good}", "--probe", "{probe}"), 2, "did you swap --good and --bad?"),
    ("good-pin-unknown", ("run", "--good", "@nosuch", "--bad", "main", "--probe", "{probe}"), 2, "no pin named 'nosuch'"),
    ("bad-pin-unknown", ("run", "--good", "{good}", "--bad", "@nosuch", "--probe", "{probe}"), 2, "no pin named 'nosuch'"),
    ("good-empty", ("run", "--good", "", "--bad", "main", "--probe", "{probe}"), 2, "good revision"),
    ("good-range", ("run", "--good", "main~3..main", "--bad", "main", "--probe", "{probe}"), 2, "unknown good revision"),
    ("no-bad", ("run", "--good", "{good}", "--probe", "{probe}"), 2, "no bad revision"),
    ("no-good-no-pin", ("run", "--bad", "main", "--probe", "{probe}"), 2, "no good revision"),
    ("nothing-to-resume", ("run",), 2, "no bad revision"),
    ("pin-good-invalid", (*RUN, "--pin-good", "no good"), 2, "invalid pin name 'no good' for --pin-good"),
    ("pin-good-path", (*RUN, "--pin-good", "../x"), 2, "invalid pin name '../x' for --pin-good"),
    ("code-rev-without-data-axis", (*RUN, "--code-rev", "main"), 2, "--code-rev fixes the code on the data axis"),
    ("data-rev-with-data-axis", (*RUN, "--axis", "data", "--data-rev", "main"), 2, "--data-rev pins the data"),
    ("from-unknown-session", (*RUN, "--from", "nosuch"), 2, "no sessions"),
    ("C-missing", ("run", "-C", "{tmp}/nowhere", "--good", "a", "--bad", "b"), 2, "cannot change to"),
    ("C-file", ("run", "-C", "{tmp}/afile", "--good", "a", "--bad", "b"), 2, "Invalid value for '-C'"),
    ("build-blank", (*RUN, "--build", " "), 2, "the build command is empty"),
    ("empty-range", (*RUN, "--", "no/such/dir"), 2, "empty range"),
    ("executor-unknown", (*RUN, "--executor", "bogus://x"), 2, "executor"),
]
SETUPS = {"probe-dir": _dir_probe, "probe-not-executable": _plain_file_probe, "C-file": _a_file}
ARG_CASES = [Case(f"args-{name}", args, code, frag, SETUPS.get(name)) for name, args, code, frag in ARGS]


# ---------------------------------------------------------------------- review commands
def _journal(ctx: Ctx) -> None:
    import json
    d = ctx.repo / ".bisector" / "sessions"
    d.mkdir(parents=True)
    start = {"v": 1, "ts": 1, "event": "start", "session": "20250101-000000.000-abcd", "bad": ctx.shas[-1],
             "goods": [ctx.shas[0]], "merge_bases": [], "first_parent": False, "paths": [], "candidates": 5,
             "search": {}, "config": {"build": {}, "probes": [], "probe_specs": [], "stop_early": True, "file": {}}}
    end = {"v": 1, "ts": 2, "event": "end", "status": "reset", "culprit": None, "probability": 0.0,
           "candidates": [], "message": "", "steps": {}, "elapsed": 0}
    (d / "20250101-000000.000-abcd.jsonl").write_text(json.dumps(start) + "\n" + json.dumps(end) + "\n")


def _pin(ctx: Ctx) -> None:
    ctx.write(".bisector/pins.toml", f'[pins.v1]\ncommit = "{ctx.shas[0]}"\n')


def _nonempty_dir(ctx: Ctx) -> None:
    (ctx.tmp / "full").mkdir()
    (ctx.tmp / "full" / "x").write_text("x")
    _pin(ctx)


REVIEW = [
    ("journal-no-sessions", ("journal",), 2, "no sessions", None),
    ("journal-unknown", ("journal", "nosuch"), 2, "unknown session 'nosuch'", _journal),
    ("journal-format", ("journal", "--format", "xml"), 2, "Invalid value for '--format'", None),
    ("log-no-sessions", ("log",), 2, "no sessions", None),
    ("log-unknown", ("log", "nosuch"), 2, "unknown session 'nosuch'", _journal),
    ("report-no-sessions", ("report", "-o", "{tmp}/r.md"), 2, "no sessions", None),
    ("report-unknown", ("report", "nosuch", "-o", "{tmp}/r.md"), 2, "unknown session 'nosuch'", _journal),
    ("report-no-output", ("report",), 2, "Missing option '-o'", None),
    ("replay-missing", ("replay", "{tmp}/nosuch.jsonl"), 2, "no such journal", None),
    ("replay-dev-zero", ("replay", "/dev/zero"), 2, "/dev/zero is not a regular file", None),
    ("replay-dir", ("replay", "{tmp}"), 2, "is a directory", None),
    ("replay-garbage", ("replay", "{tmp}/afile"), 2, "not a journal line", _a_file),
    ("pin-invalid-name", ("pin", "no good"), 2, "invalid pin name 'no good'", None),
    ("pin-unknown-rev", ("pin", "v1", "--rev", "nosuch"), 2, "nosuch", None),
    ("pin-exists", ("pin", "v1"), 2, "a pin named 'v1' exists", _pin),
    ("pin-show-unknown", ("pin", "show", "nosuch"), 2, "no pin named 'nosuch'", None),
    ("pin-rm-unknown", ("pin", "rm", "nosuch"), 2, "no pin named 'nosuch'", _pin),
    ("restore-unknown", ("restore", "nosuch", "{tmp}/out"), 2, "no pin named 'nosuch'", None),
    ("restore-nonempty", ("restore", "v1", "{tmp}/full"), 2, "is not empty", _nonempty_dir),
    ("restore-onto-file", ("restore", "v1", "{tmp}/afile"), 2, "Invalid value for 'DIRECTORY'", lambda c: (_a_file(c), _pin(c))),
    ("cache-older-than-negative", ("cache", "--prune", "--older-than", "-1"), 2, "Invalid value for '--older-than'", None),
    ("cache-max-size-negative", ("cache", "--prune", "--max-size", "-1"), 2, "Invalid value for '--max-size'", None),
    ("unknown-command", ("frobnicate",), 2, "No such command 'frobnicate'", None),
    ("reset-outside-repo", ("reset", "-C", "{tmp}"), 2, "not a git repository", None),
    ("sessions-outside-repo", ("sessions", "-C", "{tmp}"), 2, "not a git repository", None),
]
REVIEW_CASES = [Case(f"review-{name}", args, code, frag, setup) for name, args, code, frag, setup in REVIEW]


# -------------------------------------------------------------------- repository shapes
def _replace_repo(make):
    def setup(ctx: Ctx) -> None:
        import shutil
        shutil.rmtree(ctx.repo)
        make(ctx)
    return setup


def _plain(ctx: Ctx) -> None:
    ctx.repo.mkdir()


def _empty(ctx: Ctx) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(ctx.repo)], check=True)


def _bare(ctx: Ctx) -> None:
    subprocess.run(["git", "init", "-q", "--bare", str(ctx.repo)], check=True)


def _in_the_way(rel: str, folder_file: bool = True):
    def setup(ctx: Ctx) -> None:
        p = ctx.repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("in the way\n")
    return setup


def _link(rel: str, target: str):
    def setup(ctx: Ctx) -> None:
        p = ctx.repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.symlink_to(target)
    return setup


def _orphan(ctx: Ctx) -> None:
    git = ["git", "-C", str(ctx.repo)]
    subprocess.run([*git, "checkout", "-q", "--orphan", "other"], check=True)
    subprocess.run([*git, "commit", "-qm", "unrelated", "--allow-empty"], check=True)
    subprocess.run([*git, "checkout", "-q", "main"], check=True)


def _shallow(ctx: Ctx) -> None:
    import shutil
    src = ctx.tmp / "src"
    shutil.move(str(ctx.repo), src)
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{src}", str(ctx.repo)], check=True)


SHAPES = [
    ("not-a-repo", RUN, 2, "not a git repository", _replace_repo(_plain)),
    ("empty-repo", ("run", "--good", "HEAD~1", "--bad", "main", "--probe", "{probe}"), 2, "unknown", _replace_repo(_empty)),
    ("bare-repo", RUN, 2, "", _replace_repo(_bare)),
    ("dot-bisector-file", RUN, 2, ".bisector is not a folder", _in_the_way(".bisector")),
    ("sessions-file", RUN, 2, "sessions is not a folder", _in_the_way(".bisector/sessions")),
    ("frozen-file", RUN, 2, "frozen is not a folder", _in_the_way(".bisector/frozen")),
    ("dot-bisector-dev-null", RUN, 2, ".bisector is a symlink out of", _link(".bisector", "/dev/null")),
    ("sessions-dangling", RUN, 2, "is a symlink out of", _link(".bisector/sessions", "/nonexistent/x")),
    ("state-folder-file", RUN, 2, "state folder not writable", _in_the_way(".git/bisector")),
    ("journal-dot-bisector-file", ("journal",), 2, "no sessions", _in_the_way(".bisector")),
    ("reset-dot-bisector-file", ("reset",), 0, None, _in_the_way(".bisector")),
    ("unrelated-good", ("run", "--good", "other", "--bad", "main", "--probe", "{probe}"), 2, "", _orphan),
    ("shallow-good-missing", RUN, 2, "unknown good revision", _shallow),
]
SHAPE_CASES = [Case(f"shape-{name}", args, code, frag, setup) for name, args, code, frag, setup in SHAPES]


# ------------------------------------------------------------- misbehaving probes (real runs)
def _script(body: str, name: str = "p.sh"):
    def setup(ctx: Ctx) -> None:
        p = ctx.tmp / name
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(0o755)
    return setup


def _culprit(ctx: Ctx, res: CliResult) -> None:
    assert ctx.shas[3] in res.stdout, res.stdout


P = ("run", "--good", "{good}", "--bad", "main", "--probe", "{tmp}/p.sh")
PROBES = [
    Case("probe-aborts-255", P, 1, None, _script("exit 255\n"), stderr_has=""),
    Case("probe-kills-itself", P, 1, None, _script("kill -9 $$\n")),
    Case("probe-always-skips", P, 1, None, _script("exit 125\n")),
    Case("probe-good-everywhere", P, 1, None, _script("exit 0\n")),
    Case("probe-times-out", (*P, "--timeout", "0.3"), 1, None, _script("sleep 5\n")),
    Case("probe-floods-stdout", P, 0, None,
         _script("head -c 2000000 /dev/zero | tr '\\0' x\ngrep -q broken state.txt && exit 1\nexit 0\n"), after=_culprit),
    Case("build-fails-abort", (*P, "--build", "false", "--on-failure", "abort"), 1, None,
         _script("exit 0\n")),
]


# ------------------------------------------------------------------------ hostile content
def _hostile_commits(subject: str, author: str | None = None):
    def setup(ctx: Ctx) -> None:
        env = {**os.environ}
        if author:
            env["GIT_AUTHOR_NAME"] = author
        git = ["git", "-C", str(ctx.repo)]
        (ctx.repo / "x.txt").write_text("hostile\n")
        subprocess.run([*git, "add", "x.txt"], check=True)
        subprocess.run([*git, "commit", "-qm", subject], check=True, env=env)
    return setup


def _two_scripts(ctx: Ctx) -> None:
    (ctx.tmp / "a.sh").write_text("#!/bin/sh\nexit 0\n")
    (ctx.tmp / "b.sh").write_text("#!/bin/sh\ngrep -q broken state.txt && exit 1\nexit 0\n")
    for n in ("a.sh", "b.sh"):
        (ctx.tmp / n).chmod(0o755)


def _spaced_probe(ctx: Ctx) -> None:
    d = ctx.tmp / "my probes ü"
    d.mkdir()
    (d / "check me.sh").write_text(ctx.probe.read_text())
    (d / "check me.sh").chmod(0o755)


HOSTILE = [
    Case("hostile-subject-separators", RUN, 0, None, _hostile_commits("fix \x1f tab \x1e record"), after=_culprit),
    Case("hostile-latin1-author", RUN, 0, None, _hostile_commits("x", "Jos\xe9 M\xfcller"), after=_culprit),
    Case("hostile-good-option", ("run", "--good", "--output={canary}", "--bad", "main", "--probe", "{probe}"), 2,
         "invalid good revision"),
    Case("hostile-bad-shell", ("run", "--good", "{good}", "--bad", "main; touch {canary}", "--probe", "{probe}"), 2,
         "unknown bad revision"),
    Case("hostile-rev-substitution", ("run", "--good", "$(touch {canary})", "--bad", "main", "--probe", "{probe}"), 2,
         "unknown good revision"),
    Case("hostile-pin-name-shell", ("pin", "$(touch {canary})"), 2, "invalid pin name"),
    Case("hostile-probe-and-and", ("run", "--good", "{good}", "--bad", "main", "--probe", "{tmp}/a.sh && {tmp}/b.sh"),
         0, None, _two_scripts, stderr_has="holds shell syntax (&&)", after=_culprit),
    Case("hostile-probe-shell-string", ("run", "--good", "{good}", "--bad", "main", "--probe-shell",
                                        "{tmp}/a.sh && {tmp}/b.sh"), 0, None, _two_scripts, after=_culprit),
    Case("hostile-probe-semicolon-var", ("run", "--good", "{good}", "--bad", "main", "--probe",
                                         "{tmp}/a.sh; test -n \"$BISECTOR_COMMIT\" && {tmp}/b.sh"),
         0, None, _two_scripts, stderr_has="holds shell syntax (;)", after=_culprit),
    Case("hostile-probe-path-spaces", ("run", "--good", "{good}", "--bad", "main", "--probe",
                                       "'{tmp}/my probes ü/check me.sh'"), 0, None, _spaced_probe, after=_culprit),
    Case("hostile-pathspec-option", (*RUN, "--", "--output={canary}"), 2, "empty range"),
]

ALL = CONFIG_CASES + ARG_CASES + REVIEW_CASES + SHAPE_CASES + PROBES + HOSTILE


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_bad_input_is_one_line(case: Case, tmp_path: Path) -> None:
    run_case(case, tmp_path)


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    """-v: the same one `Error:` line, after the traceback that led to it."""
    from tests.fixtures.cli import bisector
    from tests.fixtures.oneline import make_ctx

    ctx = make_ctx(tmp_path)
    ctx.write(".bisector", "in the way\n")
    res = bisector(ctx.repo, "-v", "run", "--good", ctx.shas[0], "--bad", "main", "--probe", str(ctx.probe))
    assert res.returncode == 2
    assert "Traceback" in res.stderr and res.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert "is not a folder" in res.stderr


def test_unreachable_scheduler_leaves_no_session(tmp_path: Path) -> None:
    """An executor that cannot start is one line, and no empty unfinished session is left to resume."""
    dask = pytest.importorskip("dask")
    from tests.fixtures.cli import bisector
    from tests.fixtures.oneline import make_ctx

    ctx = make_ctx(tmp_path)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        res = bisector(ctx.repo, "run", "--good", ctx.shas[0], "--bad", "main", "--probe", str(ctx.probe),
                       "--executor", "dask://127.0.0.1:1")
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert [x for x in res.stderr.splitlines() if x.startswith("Error:")] == [
        next(x for x in res.stderr.splitlines() if "cannot reach the Dask scheduler" in x)]
    assert not list((ctx.repo / ".bisector" / "sessions").glob("*.jsonl"))
    again = bisector(ctx.repo, "run", "--good", ctx.shas[0], "--bad", "main", "--probe", str(ctx.probe))
    assert again.returncode == 0 and ctx.shas[3] in again.stdout, again.stderr
