"""`bisector run` end to end on a real git + DVC repository with a local remote."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fixtures.cli import CliResult, bisector, journal_events, shell_probe
from tests.fixtures.dvcrepos import DvcRepo, template
from tests.fixtures.repos import GitRepo, linear_history, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture
def ml(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[DvcRepo, dict[str, str]]:
    tpl, commits = template(tmp_path_factory)
    return tpl.copy_to(tmp_path / "copy"), commits


def run(r: DvcRepo, *args: str) -> CliResult:
    """`bisector ARGS` in process in the DVC repository, with its hermetic environment."""
    return bisector(r.path, *args, env=r.env)


def probe(tmp_path: Path, body: str, name: str = "probe.sh") -> str:
    return str(shell_probe(tmp_path, body + "\n", name=name))


def events(r: DvcRepo) -> list[dict]:
    return journal_events(r.path)


def bisect_found(ml: tuple[DvcRepo, dict[str, str]], tmp_path: Path, body: str, *more: str) -> CliResult:
    """`bisector run` from `init` to `images` with a probe of this body; asserts it blames `both`."""
    r, c = ml
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", probe(tmp_path, body), *more)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['both']} is the first bad commit" in res.stdout
    return res


def test_code_axis_finds_data_culprit_and_attributes_it(ml, tmp_path: Path) -> None:
    r, c = ml
    before = snapshot(r.path)
    # The model is broken once it was trained on "charlie" (the `both` commit changed code and data).
    res = bisect_found(ml, tmp_path, "! grep -q charlie model.txt")
    assert "Culprit is the DATA" in res.stdout
    assert "modified  data/raw.txt" in res.stdout
    ev = events(r)
    # The culprit's code with its parent's data is good (it does not settle it), then the reverse.
    assert crossings(r) == [(c["both"], c["labels"]), (c["labels"], c["both"])]
    assert ev[-1]["attribution"]["culprit_is"] == "data" and ev[-1]["attribution"]["how"].startswith("two crossings")
    # Every step ran `dvc repro` on checked-out data (never stale): the build log says so.
    steps = [e for e in ev if e["event"] == "step" and e["role"] != "crossing"]
    assert all(e["build"]["status"] in ("ok", "cached") for e in steps)
    assert snapshot(r.path) == before
    # A second search over the same range with another probe rebuilds nothing (build cache).
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", probe(tmp_path, "! grep -q charlie model.txt", "p2.sh"))
    assert res.returncode == 0, res.stderr
    steps = [e for e in events(r) if e["event"] == "step" and e["role"] != "crossing"]
    assert steps and all(e["build"]["status"] == "cached" for e in steps)
    assert snapshot(r.path) == before


def crossings(r: DvcRepo) -> list[tuple[str, str]]:
    """(code, data) of each crossing step of the last session."""
    return [(e["commit"], e["data_rev"]) for e in events(r) if e["event"] == "step" and e["role"] == "crossing"]


def test_code_culprit_attributed_to_code(ml, tmp_path: Path) -> None:
    r, c = ml
    res = bisect_found(ml, tmp_path, "! grep -q '^v3:' model.txt")
    assert "Culprit is the CODE (one crossing: the culprit's code with its parent's data is bad" in res.stdout
    # One crossing settles it: the culprit's code with its parent's data already fails.
    assert crossings(r) == [(c["both"], c["labels"])]
    att = events(r)[-1]["attribution"]
    assert att["culprit_is"] == "code" and att["how"].startswith("one crossing")
    assert "parent_code_culprit_data" not in att


def test_data_only_culprit_is_attributed_from_its_diff(ml, tmp_path: Path) -> None:
    r, c = ml
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", probe(tmp_path, "! grep -q ':L2:' model.txt"))
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['labels']} is the first bad commit" in res.stdout
    assert "Culprit is the DATA (from its diff: only the data changed, no crossing)" in res.stdout
    assert crossings(r) == []


def test_data_axis_with_fixed_code(ml, tmp_path: Path) -> None:
    r, c = ml
    res = bisect_found(ml, tmp_path, "! grep -q charlie model.txt", "--axis", "data")
    assert "first bad DATA revision" in res.stdout
    ev = events(r)
    assert ev[0]["axis"] == "data" and ev[0]["code_rev"] == c["images"]
    # Only data revisions are candidates: init's successors where inputs changed.
    assert ev[0]["candidates"] <= 5
    assert all(e["commit"] == c["images"] for e in ev if e["event"] == "step")


def test_missing_data_makes_the_bound_unusable_with_a_reason(ml, tmp_path: Path) -> None:
    r, c = ml
    md5 = r.md5_of("data/raw.txt.dvc", c["unpushed"])
    r.cache_object(md5).unlink()
    p = probe(tmp_path, "! grep -q charlie model.txt")
    # Bounds checked first: by default a bad bound that a bad candidate implies is never probed.
    (r.path / "bisector.toml").write_text('[search]\nbounds = "check"\n')
    res = run(r, "run", "--good", c["init"], "--bad", c["unpushed"], "--probe", p)
    assert res.returncode == 1
    assert "Cannot bisect: the bad bound" in res.stdout
    assert "data/raw.txt" in res.stdout and "not pushed to the remote" in res.stdout


def test_only_the_combination_fails_is_both(ml, tmp_path: Path) -> None:
    r, _ = ml
    res = bisect_found(ml, tmp_path, "! grep -q '^v3:charlie' model.txt")
    assert "Culprit is the CODE and the DATA: only the two together break it" in res.stdout
    assert events(r)[-1]["attribution"]["culprit_is"] == "both" and len(crossings(r)) == 2


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_writing_its_inputs_in_place_leaves_user_cache_and_config_alone(ml, tmp_path: Path) -> None:
    r, c = ml
    before_ws = snapshot(r.path)
    before_cache = _tree_hashes(r.cache)
    site = r.base / "dvc-site"
    before_site = _tree_hashes(site) if site.exists() else {}
    dvc_config = {p.name: p.read_bytes() for p in (r.path / ".dvc").glob("config*")}
    p = probe(tmp_path, "! grep -q charlie model.txt")
    # The build appends to its own input before training: with the default link type the
    # worktree holds copies, so the user's cache objects cannot change.
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", p,
              "--build", "echo tampered >> data/raw.txt && dvc repro")
    assert res.returncode == 0, res.stderr + res.stdout
    after_cache = _tree_hashes(r.cache)
    changed = {k for k in before_cache if after_cache.get(k) != before_cache[k]}
    assert not changed, changed  # every existing object's bytes (new build outputs may be added)
    assert snapshot(r.path) == before_ws
    assert {p.name: p.read_bytes() for p in (r.path / ".dvc").glob("config*")} == dvc_config
    assert (_tree_hashes(site) if site.exists() else {}) == before_site
    notes = [n for e in events(r) if e["event"] == "step" for n in e.get("notes", [])]
    assert any("modified DVC-tracked inputs: data/raw.txt" in n for n in notes)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--axis", "data", "--data-rev", "HEAD"], "--data-rev pins the data while code moves"),
        (["--code-rev", "HEAD"], "--code-rev fixes the code on the data axis: add --axis data"),
        (["--data-rev", "nosuchrev"], "unknown data revision: nosuchrev"),
        (["--axis", "data", "--code-rev", "nosuchrev"], "unknown code revision: nosuchrev"),
    ],
)
def test_data_option_errors(ml, tmp_path: Path, args: list[str], message: str) -> None:
    r, c = ml
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", "true", *args)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("Error: ") and len(res.stderr.strip().splitlines()) == 1
    assert message in res.stderr


def test_data_axis_without_data_changes_is_an_error(ml, tmp_path: Path) -> None:
    r, c = ml
    res = run(r, "run", "--axis", "data", "--good", c["dataB"], "--bad", c["codeV2"], "--probe", "true")
    assert res.returncode == 2
    assert "the DVC-tracked inputs did not change between good" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_data_axis_outside_a_dvc_repo(tmp_path: Path) -> None:
    repo = GitRepo.init(tmp_path / "plain")
    shas = linear_history(repo, 4, culprit=3)
    res = bisector(repo.path, "run", "--axis", "data", "--good", shas[0], "--bad", "main", "--probe", "true")
    assert res.returncode == 2
    assert "--axis data needs a DVC repository" in res.stderr


def test_corrupted_cache_object(ml, tmp_path: Path) -> None:
    """DVC never re-hashes cache objects: by default a corrupted one goes unnoticed (documented:
    DVC records the expected hash for the copy, so `dvc repro` even skips the stage and checks
    out the old model); with `[dvc] verify = true` the step is a skip that names the object."""
    r, c = ml
    md5 = r.md5_of("data/raw.txt.dvc", c["both"])  # "charlie"
    obj = r.cache_object(md5)
    obj.chmod(0o644)
    obj.write_text("rotten\n")
    p = probe(tmp_path, "! grep -q charlie model.txt")
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", p)
    # Default: nothing notices (the search runs on what DVC materializes).
    assert "corrupted cache object" not in res.stdout + res.stderr
    r.write({"bisector.toml": "[dvc]\nverify = true\n"})
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", p)
    assert res.returncode == 1
    assert "data/raw.txt" in res.stdout and "corrupted cache object" in res.stdout
    assert "delete that object and run `dvc fetch`" in res.stdout


def test_cache_command_shows_and_prunes(ml, tmp_path: Path) -> None:
    r, c = ml
    p = probe(tmp_path, "! grep -q charlie model.txt")
    assert run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", p).returncode == 0
    res = run(r, "cache")
    assert res.returncode == 0, res.stderr
    assert "model.txt" in res.stdout and "entries" in res.stdout
    res = run(r, "cache", "--prune", "--older-than", "1")
    assert res.returncode == 0 and "Removed 0 entries" in res.stdout
    res = run(r, "cache", "--prune")
    assert res.returncode == 0 and "Removed 0 entries" not in res.stdout
    assert "The build cache is empty" in run(r, "cache").stdout
