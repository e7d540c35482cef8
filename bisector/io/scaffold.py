"""`bisector init`: look at a repository and write a commented `bisector.toml` for it.

What it looks for: DVC (`.dvc/`), the stages of `dvc.yaml` (the build is `dvc repro`), the metrics
files it declares or that sit in the checkout (`metrics.json`, ...) and their numbers (a `metric`
probe against the good bound), and a test suite (a `pytest` probe on today's test files, or
`make test`). The text is checked against the configuration schema before it is written, and an
existing file is never replaced without `force`.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisector.core.errors import UsageError
from bisector.io.config import CONFIG_FILE, check
from bisector.io.data.files import flatten, load_yaml
from bisector.io.git import git, repo_root

METRIC_NAMES = ("metrics.json", "metrics.yaml", "metrics.yml", "scores.json", "eval.json", "results.json")
LOWER_IS_BETTER = re.compile(r"loss|err|mse|mae|rmse|perplexity|ppl|latency|time|wer|cer", re.I)
_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")


@dataclass
class Detected:
    """What `bisector init` found in a repository."""

    dvc: bool = False
    stages: list[str] = field(default_factory=list)
    metrics_files: list[str] = field(default_factory=list)
    metric: tuple[str, str, float] | None = None  # (file, key, value now) of the number to watch
    tests: list[str] = field(default_factory=list)  # pytest paths (relative to the repository)
    test_command: str | None = None  # another test command (make test), when no pytest suite


def detect(repo: Path) -> Detected:
    d = Detected(dvc=(repo / ".dvc").is_dir())
    tracked = git(repo, "ls-files", "-z").split("\0")
    dvc_yaml = repo / "dvc.yaml"
    if dvc_yaml.is_file():
        doc = load_yaml(dvc_yaml.read_text(encoding="utf-8", errors="replace"))
        if doc is None:
            raise UsageError("dvc.yaml is not valid YAML: fix it, then run `bisector init` again")
        stages = doc.get("stages") if isinstance(doc, dict) else None
        d.stages = list(stages) if isinstance(stages, dict) else []
        d.metrics_files = _declared_metrics(doc)
    for name in [t for t in tracked if Path(t).name in METRIC_NAMES] + list(METRIC_NAMES):
        if name not in d.metrics_files and (repo / name).is_file():
            d.metrics_files.append(name)
    for name in d.metrics_files:
        number = _first_number(repo / name)
        if number is not None:
            d.metric = (name, *number)
            break
    d.tests = _pytest_paths(repo, tracked)
    if not d.tests and _has_make_target(repo / "Makefile", "test"):
        d.test_command = "make test"
    return d


def _declared_metrics(doc: Any) -> list[str]:
    """Metrics files of dvc.yaml: the top-level `metrics:` list and each stage's `metrics:` outputs."""
    found: list[str] = []
    if not isinstance(doc, dict):
        return found

    def names(items: Any, wdir: str = "") -> None:
        for item in items if isinstance(items, list) else []:
            for name in ([item] if isinstance(item, str) else list(item) if isinstance(item, dict) else []):
                path = str(Path(wdir) / str(name)) if wdir not in ("", ".") else str(name)
                if path not in found:
                    found.append(path)

    names(doc.get("metrics"))
    for stage in (doc.get("stages") or {}).values() if isinstance(doc.get("stages"), dict) else ():
        if isinstance(stage, dict):
            names(stage.get("metrics"), str(stage.get("wdir") or ""))
    return found


def _first_number(path: Path) -> tuple[str, float] | None:
    """(key, value) of the first number in a JSON / YAML / TOML metrics file, or None."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            doc = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            doc = load_yaml(text)
        else:
            doc = json.loads(text)
    except Exception:  # not a metrics file we can read: no condition from it
        return None
    for key, value in flatten(doc).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, float(value)
    return None


def _pytest_paths(repo: Path, tracked: list[str]) -> list[str]:
    tests = sorted(t for t in tracked if _TEST_FILE.search(t) and (repo / t).is_file())
    if not tests:
        return []
    folders = sorted({t.split("/")[0] for t in tests if "/" in t})
    if folders and all("/" in t for t in tests):
        return folders  # `tests/`: every test file (and conftest.py) under it, frozen at the start
    return tests


def _has_make_target(makefile: Path, target: str) -> bool:
    if not makefile.is_file():
        return False
    return re.search(rf"^{target}\s*:", makefile.read_text(encoding="utf-8", errors="replace"), re.M) is not None


def _condition(key: str, value: float) -> str:
    """`key >= good * 0.98` (or `<= good * 1.02` for a loss): a 2 % drop from the good bound is bad."""
    if LOWER_IS_BETTER.search(key):
        return f"{key} <= good * 1.02"
    return f"{key} >= good * 0.98"


def render(d: Detected) -> str:
    """The commented bisector.toml for what was detected (valid under io.config's schema)."""
    out = ["# bisector.toml: written by `bisector init`; edit freely (docs: README.md, docs/probes.md).",
           "# Every search reads this file once, at its start, and judges every revision by it.",
           "# Run: bisector run --good <REV where it worked> --bad <REV where it is broken>", ""]
    out += ["[build]"]
    if d.dvc and d.stages:
        out += [f"# DVC found with stages: {', '.join(d.stages)}. Each step runs the pipeline.",
                'command = "dvc repro"']
    elif d.dvc:
        out += ["# DVC found, but no dvc.yaml stages: each step only checks out the revision's data.",
                '# command = "dvc repro"']
    else:
        out += ["# A command run in each revision before the probe (install, compile, train), e.g.:",
                '# command = "pip install -e ."']
    out += ["timeout = 3600         # seconds",
            'on_failure = "skip"    # a failed build: skip | bad | abort', ""]
    probes = 0
    if d.metric:
        file, key, value = d.metric
        out += [f"# {file} has {key} = {value:g} now: a revision is bad when it drops 2 % below the good bound.",
                "[[probes]]", 'type = "metric"', f"file = {json.dumps(file)}",
                f"condition = {json.dumps(_condition(key, value))}", ""]
        probes += 1
    elif d.metrics_files:
        out += [f"# Metrics files found ({', '.join(d.metrics_files)}) but no number in them yet; e.g.:",
                "# [[probes]]", '# type = "metric"', '# condition = "accuracy >= good - 0.02"', ""]
    if d.tests:
        out += ["# Today's test files judge every revision (frozen at the start): 0 good, 1 bad,",
                "# 2-5 (collection or usage errors, nothing collected) skip.",
                "[[probes]]", 'type = "pytest"', f"tests = {json.dumps(d.tests)}",
                '# k = "not slow"        # pytest -k', '# markers = "not gpu"   # pytest -m', ""]
        probes += 1
    elif d.test_command:
        out += ["# Your test command (exit 0 good, 125 skip, 1-127 bad):", "[[probes]]", 'type = "command"',
                f"run = {json.dumps(d.test_command)}", ""]
        probes += 1
    if not probes:
        out += ["# No metrics file and no tests found: say how to tell good from bad (exit 0 good,",
                "# 125 skip, 1-127 bad), or pass --probe 'CMD' to `bisector run`.", "# [probe]",
                '# run = "./check.sh"', ""]
    out += ["[search]", "# first_parent = true   # follow only the first parent of merges",
            '# paths = ["src/"]      # only revisions touching these paths',
            "# noise = 0.1           # a flaky probe: search with a posterior", ""]
    return "\n".join(out)


def write_config(path: Path | str = ".", *, force: bool = False) -> tuple[Path, Detected]:
    """Detect and write `<repo>/bisector.toml`; refuses to replace one without `force`."""
    repo = repo_root(Path(path))
    target = repo / CONFIG_FILE
    if target.exists() and not force:
        raise UsageError(f"{target} already exists: edit it, or pass --force to replace it")
    d = detect(repo)
    text = render(d)
    check(tomllib.loads(text))  # what we write must load
    target.write_text(text, encoding="utf-8")
    return target, d
