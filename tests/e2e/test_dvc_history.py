"""Data history from git alone, on the real DVC history of dvcrepos.ml_history (read-only)."""

from __future__ import annotations

import sys

import pytest
from tests.fixtures.dvcrepos import template

from bisector.io.data import attribution, classify_culprit, data_diff, data_revisions, params_diff
from bisector.core.model import Verdict


@pytest.fixture
def ml(tmp_path_factory: pytest.TempPathFactory):
    return template(tmp_path_factory)  # read-only queries: no copy needed


def test_data_revisions_are_the_input_changes(ml) -> None:
    repo, c = ml
    revs = data_revisions(repo.path, c["init"], c["unpushed"])
    assert [(r.sha, r.changed) for r in revs] == [
        (c["dataB"], ("data/raw.txt",)),
        (c["labels"], ("data/labels.txt",)),
        (c["both"], ("data/raw.txt",)),
        (c["images"], ("data/images",)),
        (c["unpushed"], ("data/raw.txt",)),
    ]
    # params (dvc.lock rewritten, inputs equal) and code commits are not data revisions
    assert len({r.fingerprint for r in revs}) == 5
    assert revs[3].inputs["data/images"].endswith(".dir")
    assert set(revs[0].inputs) == {"data/raw.txt", "data/labels.txt"}


def test_data_revisions_with_paths_and_from_before_dvc(ml) -> None:
    repo, c = ml
    assert [r.sha for r in data_revisions(repo.path, c["init"], c["both"], paths=["data/labels.txt"])] == [c["labels"]]
    assert [r.sha for r in data_revisions(repo.path, c["init"], c["both"], paths=["data/labels*"])] == [c["labels"]]
    first = data_revisions(repo.path, c["pre"], c["readme"])
    assert [(r.sha, r.changed) for r in first] == [(c["init"], ("data/labels.txt", "data/raw.txt"))]
    assert data_revisions(repo.path, c["codeV2"], c["params"]) == []


def test_data_diff_and_params_diff(ml) -> None:
    repo, c = ml
    (change,) = data_diff(repo.path, c["init"], c["dataB"])
    assert (change.path, change.status, change.old_size, change.new_size) == ("data/raw.txt", "modified", 6, 6)
    assert change.old_hash == "md5:" + repo.md5_of("data/raw.txt.dvc", c["init"])
    assert change.new_hash == "md5:" + repo.md5_of("data/raw.txt.dvc", c["dataB"])
    added = data_diff(repo.path, c["pre"], c["init"])
    assert [(d.path, d.status, d.new_size) for d in added] == [("data/labels.txt", "added", 3), ("data/raw.txt", "added", 6)]
    assert data_diff(repo.path, c["dataB"], c["params"]) == []
    (folder,) = data_diff(repo.path, c["both"], c["images"])
    assert (folder.path, folder.status, folder.old_size, folder.new_size) == ("data/images", "added", None, 16)
    assert params_diff(repo.path, c["codeV2"], c["params"]) == {"scale": (1, 2)}
    assert params_diff(repo.path, c["init"], c["codeV2"]) == {}
    assert params_diff(repo.path, c["pre"], c["init"]) == {"scale": (None, 1)}


def test_classify_culprit(ml) -> None:
    repo, c = ml
    assert classify_culprit(repo.path, c["dataB"]) == {"code": False, "data": True}
    assert classify_culprit(repo.path, c["codeV2"]) == {"code": True, "data": False}
    assert classify_culprit(repo.path, c["params"]) == {"code": True, "data": False}
    assert classify_culprit(repo.path, c["both"]) == {"code": True, "data": True}
    assert classify_culprit(repo.path, c["pre"]) == {"code": True, "data": False}


@pytest.mark.parametrize(
    "pc_cd, cc_pd, expected",
    [
        ("bad", "good", "data"),
        ("good", "bad", "code"),
        ("good", "good", "both"),
        ("bad", "bad", "both"),
        (Verdict.BAD, Verdict.GOOD, "data"),
        (Verdict.SKIP, Verdict.BAD, "unknown"),
        ("good", "abort", "unknown"),
    ],
)
def test_attribution(pc_cd, cc_pd, expected) -> None:
    assert attribution(pc_cd, cc_pd) == expected


def test_no_dvc_import_at_module_import() -> None:
    import subprocess

    # (PyYAML is a declared dependency, imported at the top of io/data/files; dvc and its ruamel are not.)
    code = "import bisector.io.data, bisector.build.cache, sys; print(any(m == 'dvc' or m.startswith(('dvc.', 'ruamel')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
