"""Pins record the environment key of the pinned revision; `bisector restore` brings it back.

Real uv, with the wheels of tests/fixtures/envrepos.py (no network).
"""

from __future__ import annotations

import os
from pathlib import Path


from bisector.io.env import EnvSettings, spec_at
from bisector.io.envcache import EnvCache, installed_packages
from bisector.review.pins.store import load_pins
from tests.fixtures.cli import bisector
from tests.fixtures.envrepos import env_history, hermetic_uv, needs_uv  # noqa: F401 (hermetic_uv: autouse)
from tests.fixtures.repos import GitRepo

pytestmark = needs_uv


def _tinydep(venv: Path) -> str:
    return installed_packages(venv)["tinydep"]


def test_a_pin_records_the_environment_key_and_restore_builds_then_reuses_it(repo: GitRepo, tmp_path: Path) -> None:
    h = env_history(repo, 4, bump_at=2)
    (repo.path / "bisector.toml").write_text('[env]\nmode = "uv"\n')  # untracked: the settings of today
    pinned = bisector(repo.path, "pin", "old", "--rev", h.shas[1])
    assert pinned.returncode == 0, pinned.stderr
    pin = load_pins(repo.path)["old"]
    expected = spec_at(repo.path, h.shas[1], EnvSettings(mode="uv"))
    assert expected is not None and pin.env == {"key": expected.key, "mode": "uv", "kind": "uv.lock"}
    assert f'key = "{expected.key}"' in (repo.path / ".bisector/pins.toml").read_text()
    cache = EnvCache.for_repo(repo.path)
    assert cache.lookup(expected.key) is None

    first = bisector(repo.path, "restore", "old", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    assert f"Environment {expected.key[:12]} built, then restored into {tmp_path / 'a' / '.venv'}" in first.stdout
    assert _tinydep(tmp_path / "a" / ".venv") == "1.0" and cache.lookup(expected.key) is not None

    second = bisector(repo.path, "restore", "old", str(tmp_path / "b"))
    assert second.returncode == 0 and "restored from the environment cache" in second.stdout
    pyvenv = "pyvenv.cfg"
    assert os.stat(tmp_path / "b" / ".venv" / pyvenv).st_ino == os.stat(cache.env_path(expected.key) / pyvenv).st_ino

    # The newer revision pins the other lock; a pin made without [env] has no environment.
    bisector(repo.path, "pin", "new", "--rev", h.shas[3])
    assert load_pins(repo.path)["new"].env["key"] != expected.key
    (repo.path / "bisector.toml").unlink()
    bisector(repo.path, "pin", "plain", "--rev", h.shas[1])
    assert load_pins(repo.path)["plain"].env == {}
    plain = bisector(repo.path, "restore", "plain", str(tmp_path / "c"))
    assert plain.returncode == 0 and "Environment" not in plain.stdout and not (tmp_path / "c" / ".venv").exists()


def test_a_pin_from_a_session_records_the_key_its_step_ran_with(repo: GitRepo, tmp_path: Path) -> None:
    h = env_history(repo, 6, bump_at=2, culprit_at=4)
    run = bisector(repo.path, "run", "--env", "uv", "--good", h.shas[0], "--bad", "main",
                   "--probe", "python check.py", "--pin-good", "before")
    assert run.returncode == 0, run.stderr
    pin = load_pins(repo.path)["before"]
    assert pin.commit == h.shas[3] and pin.env["mode"] == "uv"
    expected = spec_at(repo.path, h.shas[3], EnvSettings(mode="uv"))
    assert expected is not None and pin.env["key"] == expected.key
    # The key is in the cache (the session built it): restore only links it.
    restored = bisector(repo.path, "restore", "before", str(tmp_path / "r"))
    assert restored.returncode == 0 and "restored from the environment cache" in restored.stdout
    assert _tinydep(tmp_path / "r" / ".venv") == "2.0"


def test_an_environment_that_cannot_be_built_is_one_error_line(repo: GitRepo, tmp_path: Path) -> None:
    h = env_history(repo, 2, bump_at=None)
    (repo.path / "bisector.toml").write_text('[env]\nmode = "uv"\nuv_args = ["--no-such-option"]\n')
    assert bisector(repo.path, "pin", "p", "--rev", h.shas[1]).returncode == 0
    assert load_pins(repo.path)["p"].config["env.uv_args"] == ["--no-such-option"]  # what a rebuild uses
    failed = bisector(repo.path, "restore", "p", str(tmp_path / "x"))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith("Error: pin 'p': the code is restored in ") and "could not be built" in line
    assert (tmp_path / "x" / "app.py").exists() and not (tmp_path / "x" / ".venv").exists()
