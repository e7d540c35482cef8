"""A bad bisector.toml (or [tool.bisector]) is one line `Error: FILE: [section] key ...`, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bisector.cli.main import main
from bisector.io.config import load_file_config
from tests.fixtures.repos import GitRepo, linear_history


def bisect(repo: GitRepo, shas: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["run", "-C", str(repo.path), "--good", shas[0], "--bad", "main",
                                    "--probe", "test ! -e nothing"])
    return res.exit_code, res.stderr


@pytest.mark.parametrize("toml, message", [
    ('[search]\nfirst_parent = "no"\n',
     'bisector.toml: [search] first_parent must be a boolean (true or false), not "no"'),
    ("[search]\nfirstparent = true\n",
     "bisector.toml: unknown key `firstparent` in [search]: did you mean `first_parent`?"),
    ("[serch]\nfirst_parent = true\n",
     "bisector.toml: unknown section [serch]: did you mean [search]?"),
    ("[search]\nnoise = 0.7\n",
     "bisector.toml: [search] noise must be a number >= 0 and < 0.5, not 0.7"),
    ("[search]\nconfidence = 1\n",
     "bisector.toml: [search] confidence must be a number > 0.5 and < 1, not 1"),
    ("[build]\ncommand = 'make'\non_failure = 'maybe'\n",
     'bisector.toml: [build] on_failure must be one of abort, bad, skip, not "maybe"'),
    ("[build]\ntimeout = 0\n",
     "bisector.toml: [build] timeout must be a number > 0, not 0"),
    ("build = 'make'\n",
     'bisector.toml: [build] must be a table, not "make"'),
    ("[workers]\ngpus = [0, 1.5]\n",
     "bisector.toml: [workers] gpus[1] must be an integer or a string, not 1.5"),
    ("[[probes]]\ntype = 'command'\nrun = 'true'\n[[probes]]\ntype = 3\n",
     "bisector.toml: [[probes]] #2 type must be a string, not 3"),
    ("probes = 'check.sh'\n",
     'bisector.toml: [[probes]] must be a list of tables, not "check.sh"'),
    ("[dvc]\nverify = 1\n",
     "bisector.toml: [dvc] verify must be a boolean (true or false), not 1"),
    ("[executor]\nrepo-url = 'git@example.com:x.git'\n",
     "bisector.toml: unknown key `repo-url` in [executor]: did you mean `repo_url`?"),
])
def test_bad_bisector_toml_is_one_line_exit_2(repo: GitRepo, toml: str, message: str) -> None:
    shas = linear_history(repo, 4, culprit=3)
    (repo.path / "bisector.toml").write_text(toml)
    code, err = bisect(repo, shas)
    assert code == 2, err
    assert err == f"Error: {message}\n"


def test_pyproject_tool_bisector_is_checked_and_named(repo: GitRepo) -> None:
    shas = linear_history(repo, 4, culprit=3)
    (repo.path / "pyproject.toml").write_text("[project]\nname = 'x'\n\n[tool.bisector.search]\nmax_steps = 0\n")
    code, err = bisect(repo, shas)
    assert code == 2
    assert err == "Error: pyproject.toml: [tool.bisector.search] max_steps must be an integer >= 1, not 0\n"


def test_a_good_config_is_returned_as_written(tmp_path: Path) -> None:
    text = ("[build]\ncommand = 'make'\ntimeout = 60\non_failure = 'bad'\noutputs = ['model.pt']\n"
            "[search]\nflaky = true\nconfidence = 0.95\npaths = ['src/']\n"
            "[[probes]]\ntype = 'metric'\nfile = 'metrics.json'\nkey = 'acc'\nmin = 0.9\n"
            "[dvc]\nlink_type = 'copy'\n[workers]\ngpus = [0, '1']\n[executor]\nworker_cache = '/scratch'\n")
    (tmp_path / "bisector.toml").write_text(text)
    config = load_file_config(tmp_path)
    assert config["search"] == {"flaky": True, "confidence": 0.95, "paths": ["src/"]}  # no defaults added
    assert config["probes"][0] == {"type": "metric", "file": "metrics.json", "key": "acc", "min": 0.9}
    assert config["workers"]["gpus"] == [0, "1"]
    assert load_file_config(tmp_path / "missing") == {}
