"""Environment keys, settings and the environment cache: real git, no resolver, no network."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bisector.build.run import BuildConfig
from bisector.core.errors import UsageError
from bisector.io.env import EnvSettings, _Files, env_changed, env_spec
from bisector.io.envcache import EnvCache
from tests.fixtures.repos import GitRepo

UV = EnvSettings(mode="uv", python="3.11")


def spec_at(repo: GitRepo, rev: str, settings: EnvSettings = UV):
    return env_spec(settings, _Files(repo.path, rev))


def test_same_lock_same_key_and_a_changed_lock_a_new_one(repo: GitRepo) -> None:
    a = repo.commit({"uv.lock": "version = 1\n", "pyproject.toml": "[project]\nname='x'\n", "x.py": "1"})
    b = repo.commit({"x.py": "2", "pyproject.toml": "[project]\nname='x'\nversion='2'\n"})  # code only
    c = repo.commit({"uv.lock": "version = 1\n# bumped\n"})
    ka, kb, kc = (spec_at(repo, r).key for r in (a, b, c))
    assert ka == kb != kc
    s = spec_at(repo, a)
    assert s.kind == "uv.lock" and s.inputs == ("uv.lock",) and s.exclude_newer is None
    # The workspace's files give the key the commit's files give.
    assert env_spec(UV, _Files(repo.path)).key == kc


def test_python_uv_args_and_mode_are_part_of_the_key(repo: GitRepo) -> None:
    rev = repo.commit({"uv.lock": "version = 1\n"})
    keys = {
        spec_at(repo, rev).key,
        spec_at(repo, rev, EnvSettings(mode="uv", python="3.12")).key,
        spec_at(repo, rev, EnvSettings(mode="uv", python="3.11", uv_args=("--no-index",))).key,
        spec_at(repo, rev, EnvSettings(mode="command", python="3.11", command="true")).key,
    }
    assert len(keys) == 4


def test_without_a_lock_the_resolution_date_is_the_inputs_last_change(repo: GitRepo) -> None:
    first = repo.commit({"requirements.txt": "tinydep\n", "a.py": "1"})
    later = repo.commit({"a.py": "2"})  # code only: same inputs, same date, same key
    bumped = repo.commit({"requirements-dev.txt": "other>=1  # dev\n"})
    s1, s2, s3 = spec_at(repo, first), spec_at(repo, later), spec_at(repo, bumped)
    date = repo.git("log", "-1", "--format=%ct", first).strip()
    assert s1.kind == "requirements" and s1.exclude_newer is not None
    import time

    assert s1.exclude_newer == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(date)))
    assert s1.key == s2.key and s3.key != s1.key and s3.exclude_newer > s1.exclude_newer
    assert s3.inputs == ("requirements-dev.txt", "requirements.txt") and set(s3.top) == {"tinydep", "other"}
    assert "resolved with releases up to" in s1.info()["note"]


def test_pyproject_keys_its_dependencies(repo: GitRepo) -> None:
    rev = repo.commit({"pyproject.toml": '[project]\nname = "x"\ndependencies = ["Tiny_Dep>=1", "b"]\n'})
    s = spec_at(repo, rev)
    assert s.kind == "pyproject" and s.top == ("tiny-dep", "b") and s.requirements == "Tiny_Dep>=1\nb\n"
    assert spec_at(repo, repo.commit({"notes.txt": "x"})).key == s.key


def test_no_inputs_no_environment(repo: GitRepo) -> None:
    assert spec_at(repo, repo.commit({"a.py": "1"})) is None


def test_env_changed_tells_a_lock_only_commit_from_one_with_code(repo: GitRepo) -> None:
    a = repo.commit({"uv.lock": "v1\n", "pyproject.toml": "[project]\n", "app.py": "1"})
    b = repo.commit({"uv.lock": "v2\n", "pyproject.toml": "[project]\n#\n"})
    c = repo.commit({"uv.lock": "v3\n", "app.py": "2"})
    d = repo.commit({"app.py": "3"})
    assert env_changed(repo.path, a, b, UV) == {"environment": True, "code": False}
    assert env_changed(repo.path, b, c, UV) == {"environment": True, "code": True}
    assert env_changed(repo.path, c, d, UV) == {"environment": False, "code": True}


def test_settings_from_the_table_and_the_flag() -> None:
    s = EnvSettings.from_table({"mode": "none", "python": "3.11", "uv_args": ["--no-index"], "timeout": 60}, "uv")
    assert s.mode == "uv" and s.uv_args == ("--no-index",) and s.timeout == 60.0
    assert EnvSettings.from_json(s.to_json()) == s
    for bad, words in (
        ({"mode": "conda"}, "env mode must be one of none, uv, command"),
        ({"mode": "command"}, "needs a command"),
        ({"uv_args": "--no-index"}, "uv_args must be a list of strings"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"mdoe": "uv"}, "unknown key(s) mdoe"),
    ):
        with pytest.raises(UsageError, match=None) as err:
            EnvSettings.from_table(bad)
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="needs uv"):
        EnvSettings.from_table({"uv": "/no/such/uv"}, "uv")


def test_build_config_without_env_serializes_as_before() -> None:
    plain = BuildConfig(command="make")
    assert "env" not in plain.to_json() and BuildConfig.from_json(plain.to_json()) == plain
    old_journal = {"command": "make", "timeout": None, "on_failure": "skip", "outputs": [], "cache": True}
    assert BuildConfig.from_json(old_journal) == plain
    with_env = BuildConfig(command="make", env=UV)
    assert with_env.to_json()["env"]["mode"] == "uv" and BuildConfig.from_json(with_env.to_json()) == with_env


def _fake_env(target: Path, calls: list[int]) -> str:
    calls.append(1)
    (target / "bin").mkdir(parents=True)
    (target / "lib/python3.11/site-packages/tinydep-1.0.dist-info").mkdir(parents=True)
    (target / "lib/python3.11/site-packages/tinydep").mkdir()
    (target / "lib/python3.11/site-packages/tinydep/__init__.py").write_text("x" * 1000)
    (target / "bin/tool").write_text(f"#!{target}/bin/python\nprint('hi')\n")
    os.chmod(target / "bin/tool", 0o755)
    os.symlink("/usr/bin/python3", target / "bin/python")
    (target / "pyvenv.cfg").write_text("home = /usr/bin\nversion_info = 3.11.7\n")
    return "Installed 1 package"


def test_cache_builds_a_key_once_under_parallel_callers_and_restores_by_links(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path / "envs")
    calls: list[int] = []
    results: list[tuple[dict, bool]] = []

    def worker() -> None:
        results.append(cache.ensure("ab" * 12, lambda t: _fake_env(t, calls)))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls.count(1) == 1 and sum(built for _, built in results) == 1
    meta = results[0][0]
    assert meta["packages"] == {"tinydep": "1.0"} and meta["python"] == "3.11.7" and meta["size"] >= 1000
    dest = tmp_path / "wt" / ".venv"
    dest.parent.mkdir()
    cache.restore("ab" * 12, dest)
    src = cache.env_path("ab" * 12)
    init = "lib/python3.11/site-packages/tinydep/__init__.py"
    assert os.stat(dest / init).st_ino == os.stat(src / init).st_ino  # a hard link, no copy
    assert (dest / "bin/tool").read_text().startswith(f"#!{dest}/bin/python")  # rewritten, not linked
    assert (src / "bin/tool").read_text().startswith(f"#!{src}/bin/python")
    assert os.access(dest / "bin/tool", os.X_OK) and os.readlink(dest / "bin/python") == "/usr/bin/python3"
    cache.restore("ab" * 12, dest)  # again over the old one
    assert (dest / init).exists()
    [entry] = cache.entries()
    assert entry.key == "ab" * 12 and entry.packages == 1
    assert [e.key for e in cache.prune(max_bytes=0)] == ["ab" * 12] and cache.entries() == []


def test_a_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    cache = EnvCache(tmp_path / "envs")

    def fail(target: Path) -> str:
        target.mkdir(parents=True)
        raise RuntimeError("resolver said no")

    with pytest.raises(RuntimeError):
        cache.ensure("cd" * 12, fail)
    assert cache.lookup("cd" * 12) is None and not (tmp_path / "envs" / ("cd" * 12)).exists()
