"""`bisector init` on a plain Python project, the Python API (and docs/api.md's example), and the
HTML report's content and log links (the browser test is in tests/e2e/test_html_report.py)."""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from pathlib import Path

import pytest

import bisector
from bisector.io.config import load_file_config
from tests.fixtures.cli import bisector as cli
from tests.fixtures.repos import GitRepo

ROOT = Path(__file__).resolve().parents[2]
GOOD = "def f(x):\n    return x * 2\n"
BUGGY = "def f(x):\n    return x * 2 if x < 10 else x * 3\n"
TEST = "from calc import f\n\ndef test_small():\n    assert f(2) == 4\n\ndef test_big():\n    assert f(20) == 40\n"


def python_project(repo: GitRepo) -> dict[str, str]:
    c = {"c1": repo.commit({"calc.py": GOOD, "tests/test_calc.py": TEST, "README.md": "calc\n"}, "c1")}
    c["c2"] = repo.commit({"README.md": "calc 2\n"}, "c2")
    c["c3"] = repo.commit({"calc.py": BUGGY}, "c3: the bug")
    c["c4"] = repo.commit({"README.md": "calc 4\n"}, "c4")
    return c


def test_init_in_a_python_project_then_run_works(repo: GitRepo) -> None:
    c = python_project(repo)
    res = cli(repo.path, "init")
    assert res.returncode == 0, res.stderr
    assert "tests tests" in res.stdout and "Wrote" in res.stdout
    text = (repo.path / "bisector.toml").read_text()
    assert text.startswith("#") and "# Today's test files judge every revision" in text
    config = load_file_config(repo.path)  # valid under the schema
    assert config["probes"] == [{"type": "pytest", "tests": ["tests"]}]
    assert "command" not in config.get("build", {})  # no DVC: no build command
    res = cli(repo.path, "run", "--good", c["c1"], "--bad", c["c4"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{c['c3']} is the first bad commit" in res.stdout


def test_init_never_overwrites_without_force(repo: GitRepo) -> None:
    python_project(repo)
    (repo.path / "bisector.toml").write_text("# mine\n")
    res = cli(repo.path, "init")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"Error: {repo.path / 'bisector.toml'} already exists: edit it, or "
                                               "pass --force to replace it"]
    assert (repo.path / "bisector.toml").read_text() == "# mine\n"
    assert cli(repo.path, "init", "--force").returncode == 0
    assert "pytest" in (repo.path / "bisector.toml").read_text()


def test_init_with_nothing_to_probe_writes_a_valid_commented_file(repo: GitRepo) -> None:
    repo.commit({"README.md": "x\n", "Makefile": "all:\n\techo\n"}, "c1")
    assert cli(repo.path, "init").returncode == 0
    text = (repo.path / "bisector.toml").read_text()
    assert "# run = \"./check.sh\"" in text
    assert tomllib.loads(text) == {"build": {"timeout": 3600, "on_failure": "skip"}, "search": {}}
    res = cli(repo.path, "run", "--good", "HEAD", "--bad", "HEAD")
    assert res.returncode == 2 and "no probe" in res.stderr


def test_init_finds_make_test_and_metrics(repo: GitRepo) -> None:
    repo.commit({"Makefile": "test:\n\ttrue\n", "metrics.json": '{"eval": {"val_loss": 0.5}}'}, "c1")
    assert cli(repo.path, "init").returncode == 0
    config = load_file_config(repo.path)
    assert config["probes"] == [{"type": "metric", "file": "metrics.json", "condition": "eval.val_loss <= good * 1.02"},
                                {"type": "command", "run": "make test"}]


def test_the_api_is_lazy_and_typed(repo: GitRepo, tmp_path: Path) -> None:
    c = python_project(repo)
    probe = tmp_path / "check.sh"
    probe.write_text("#!/bin/sh\npython -c 'from calc import f; assert f(20) == 40'\n")
    probe.chmod(0o755)
    result = bisector.bisect(good=c["c1"], bad=c["c4"], probe=str(probe), repo=repo.path)
    assert isinstance(result, bisector.SessionResult)
    assert result.status is bisector.Status.FOUND and result.culprit == c["c3"] and result.exit_code == 0
    s = bisector.load_session(repo.path)
    assert s.id == result.session and all(isinstance(st, bisector.Step) for st in s.steps)
    assert {st.commit: st.verdict for st in s.steps}[c["c3"]] is bisector.Verdict.BAD
    with pytest.raises(bisector.UsageError, match="unknown option 'probes'"):
        bisector.bisect(good=c["c1"], bad=c["c4"], probes="x", repo=repo.path)
    with pytest.raises(bisector.UsageError, match="not a revision|unknown revision|bad revision"):
        bisector.bisect(good=c["c1"], bad="nope", probe=str(probe), repo=repo.path)
    assert "bisect" in dir(bisector)
    with pytest.raises(AttributeError):
        bisector.no_such_thing  # noqa: B018


def test_docs_api_example_runs(repo: GitRepo, capsys: pytest.CaptureFixture[str]) -> None:
    python_project(repo)
    repo.git("tag", "v1.0", "HEAD~3")
    repo.commit({"check.sh": "#!/bin/sh\npython -c 'from calc import f; assert f(20) == 40'\n"}, "a probe")
    os.chmod(repo.path / "check.sh", 0o755)
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert code, "docs/api.md has a python example"
    with contextlib.chdir(repo.path):
        exec(compile(code[1], "docs/api.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("found ") and "report: report.html" in out
    html = (repo.path / "report.html").read_text()
    assert 'id="plot"' in html and 'id="evidence"' in html


def test_html_report_is_self_contained_and_says_when_logs_were_pruned(repo: GitRepo, tmp_path: Path) -> None:
    c = python_project(repo)
    repo.write({"bisector.toml": '[probe]\ntype = "pytest"\ntests = ["tests/test_calc.py"]\n'})
    assert cli(repo.path, "run", "--good", c["c1"], "--bad", c["c4"]).returncode == 0
    out = tmp_path / "r" / "report.html"
    res = cli(repo.path, "report", "--html", "-o", str(out))
    assert res.returncode == 0 and f"Wrote {out}" in res.stdout
    html = out.read_text()
    assert re.findall(r"(?:src|href)=\"(https?:[^\"]*)", html) == []
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert html.count('<circle class="point"') >= 2 and 'class="culprit"' in html
    assert "c3: the bug" in html and "calc.py" in html  # the culprit's diff stat
    links = re.findall(r'href="file://([^"]+)"', html)
    assert links and all(Path(p).is_file() for p in links), "every log link points at a kept log"
    md = tmp_path / "r" / "report.md"
    assert cli(repo.path, "report", "-o", str(md)).returncode == 0
    assert "(log `" in md.read_text() and "removed by" not in md.read_text()
    res = cli(repo.path, "cache", "--prune")
    assert res.returncode == 0 and "step logs of 1 sessions" in res.stdout
    assert not any(Path(p).exists() for p in links)
    cli(repo.path, "report", "--html", "-o", str(out))
    assert 'href="file://' not in out.read_text() and "removed by `bisector cache --prune`" in out.read_text()
    cli(repo.path, "report", "-o", str(md))
    assert "removed by `bisector cache --prune`" in md.read_text()
