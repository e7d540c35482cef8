"""Submodules (vendored model code, a shared data loader): each step checks them out at the commit
the revision records, from the user's own clones of them, with no download."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fixtures.cli import bisector, journal_events
from tests.fixtures.repos import GitRepo, snapshot

PROBE = "#!/bin/sh\ntest -f vendor/lib/api.txt || exit 125\ngrep -qx 'api v1' vendor/lib/api.txt\n"


def add_submodule(app: GitRepo, lib: GitRepo, path: str) -> None:
    # (git refuses local submodule URLs unless asked: the fixture asks, bisector never needs it)
    subprocess.run(["git", "-C", str(app.path), "-c", "protocol.file.allow=always", "submodule", "-q", "add",
                    str(lib.path), path], check=True, capture_output=True)


def app_with_lib(tmp_path: Path, n: int, bump: int) -> tuple[GitRepo, GitRepo, list[str], list[str]]:
    """`lib` has api v1 then api v2 (which breaks the app); `app` has `lib` at vendor/lib and n
    commits, the `bump`-th (1-based) moving the submodule to api v2 and nothing else."""
    lib = GitRepo.init(tmp_path / "lib")
    libs = [lib.commit({"api.txt": "api v1\n"}, "api v1"), lib.commit({"api.txt": "api v2\n"}, "api v2")]
    lib.git("checkout", "-q", libs[0])
    app = GitRepo.init(tmp_path / "app")
    app.write({"check.sh": PROBE})
    (app.path / "check.sh").chmod(0o755)
    add_submodule(app, lib, "vendor/lib")
    shas = []
    for i in range(1, n + 1):
        if i == bump:
            app.git("-C", "vendor/lib", "checkout", "-q", libs[1])
        shas.append(app.commit({"n.txt": f"{i}\n"}, "bump lib" if i == bump else f"commit {i}"))
    return app, lib, shas, libs


def test_a_submodule_bump_is_found_with_each_step_at_the_recorded_submodule_commit(tmp_path: Path) -> None:
    app, _, shas, libs = app_with_lib(tmp_path, 12, bump=8)
    app.git("-C", "vendor/lib", "checkout", "-q", libs[0])  # the user's submodule is not where main records it
    before = snapshot(app.path), snapshot(app.path / "vendor" / "lib")
    r = bisector(app.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[7]} is the first bad commit" in r.stdout
    assert (snapshot(app.path), snapshot(app.path / "vendor" / "lib")) == before
    steps = [e for e in journal_events(app.path) if e.get("event") == "step"]
    seen = {e["commit"]: e["build"]["data"]["submodules"]["vendor/lib"] for e in steps}
    assert seen and all(v == (libs[1] if shas.index(c) >= 7 else libs[0]) for c, v in seen.items()), seen


def test_a_submodule_the_user_never_cloned_stays_empty_and_the_journal_says_why(tmp_path: Path) -> None:
    app, _, shas, _ = app_with_lib(tmp_path, 6, bump=99)
    fresh = tmp_path / "fresh"  # a plain `git clone` without --recurse-submodules
    subprocess.run(["git", "clone", "-q", str(app.path), str(fresh)], check=True)
    report = tmp_path / "seen.txt"
    probe = tmp_path / "probe.sh"
    probe.write_text(f"#!/bin/sh\nls -A vendor/lib | wc -l >> {report}\nexit 0\n")
    probe.chmod(0o755)
    r = bisector(fresh, "run", "--good", shas[0], "--bad", shas[-1], "--probe", str(probe))
    assert r.returncode == 1, r.stdout + r.stderr  # the bad bound passes: bounds do not reproduce
    assert set(report.read_text().split()) == {"0"}
    steps = [e for e in journal_events(fresh) if e.get("event") == "step"]
    why = {e["build"]["data"]["submodules"]["vendor/lib"] for e in steps}
    assert len(why) == 1 and "not cloned in your checkout" in why.pop()


def test_nested_submodules_are_checked_out_too(tmp_path: Path) -> None:
    inner = GitRepo.init(tmp_path / "inner")
    inner_shas = [inner.commit({"w.txt": "ok\n"}, "ok"), inner.commit({"w.txt": "broken\n"}, "broken")]
    inner.git("checkout", "-q", inner_shas[0])
    mid = GitRepo.init(tmp_path / "mid")
    mid.commit({"m.txt": "m\n"}, "m")
    add_submodule(mid, inner, "deps/inner")
    mid_ok = mid.commit({}, "inner ok")
    mid.git("-C", "deps/inner", "checkout", "-q", inner_shas[1])
    mid_bad = mid.commit({}, "inner broken")
    mid.git("checkout", "-q", mid_ok)
    mid.git("submodule", "-q", "update")
    top = GitRepo.init(tmp_path / "top")
    top.write({"check.sh": "#!/bin/sh\ngrep -qx ok vendor/mid/deps/inner/w.txt\n"})
    (top.path / "check.sh").chmod(0o755)
    add_submodule(top, mid, "vendor/mid")
    subprocess.run(["git", "-C", str(top.path / "vendor" / "mid"), "-c", "protocol.file.allow=always",
                    "submodule", "-q", "update", "--init"], check=True, capture_output=True)
    shas = [top.commit({"n.txt": "0\n"}, "start")]
    for i in range(1, 7):
        if i == 4:
            top.git("-C", "vendor/mid", "checkout", "-q", mid_bad)
            top.git("-C", "vendor/mid", "submodule", "-q", "update")
        shas.append(top.commit({"n.txt": f"{i}\n"}, f"commit {i}"))
    r = bisector(top.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", "./check.sh")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[4]} is the first bad commit" in r.stdout
    seen = {e["commit"]: e["build"]["data"]["submodules"]["vendor/mid"]
            for e in journal_events(top.path) if e.get("event") == "step"}
    assert seen and all(v == (mid_bad if shas.index(c) >= 4 else mid_ok) for c, v in seen.items()), seen


def test_restore_of_a_pin_checks_out_its_submodules_from_the_users_clones(tmp_path: Path) -> None:
    app, lib, shas, libs = app_with_lib(tmp_path, 4, bump=3)
    assert bisector(app.path, "pin", "add", "before-bump", "--rev", shas[1]).returncode == 0
    lib.path.rename(tmp_path / "lib-moved")  # the URL of .gitmodules leads nowhere now: not used
    r = bisector(app.path, "restore", "before-bump", str(tmp_path / "copy"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "copy" / "vendor" / "lib" / "api.txt").read_text() == "api v1\n"
    assert subprocess.run(["git", "-C", str(tmp_path / "copy" / "vendor" / "lib"), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip() == libs[0]


def test_a_build_made_while_a_submodule_was_empty_is_not_reused_once_it_is_cloned(tmp_path: Path) -> None:
    app, lib, shas, _ = app_with_lib(tmp_path, 6, bump=4)
    fresh = tmp_path / "fresh"  # cloned without its submodule
    subprocess.run(["git", "clone", "-q", str(app.path), str(fresh)], check=True)
    (fresh / "bisector.toml").write_text('[build]\noutputs = ["built.txt"]\n')  # what the build cache keeps
    build = "cat vendor/lib/api.txt > built.txt 2>/dev/null || echo none > built.txt"
    probe = "grep -qx 'api v1' built.txt"
    args = ["run", "--good", shas[0], "--bad", shas[-1], "--build", build, "--probe", probe]
    r = bisector(fresh, *args)
    assert r.returncode == 1, r.stdout + r.stderr  # every build says "none": the good bound is bad
    subprocess.run(["git", "-C", str(fresh), "-c", "protocol.file.allow=always", "submodule", "-q", "update", "--init"],
                   check=True, capture_output=True)
    r = bisector(fresh, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[3]} is the first bad commit" in r.stdout
    builds = [e["build"]["status"] for e in journal_events(fresh) if e.get("event") == "step"]
    assert "cached" not in builds, builds
