"""The user's environment imports the project from the user's checkout (`pip install -e .` of a
`src/` layout, or an absolute PYTHONPATH): each step must import the step's own code."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.fixtures.cli import bisector
from tests.fixtures.repos import GitRepo, snapshot

PYPROJECT = ('[project]\nname = "mypkg"\nversion = "0.1"\n'
             '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n')
PROBE = 'python -c "import sys, mypkg; sys.exit(0 if mypkg.f() == 1 else 1)"'


def package_history(path: Path, n: int, culprit: int, where: str) -> tuple[GitRepo, list[str]]:
    """n commits of a package `mypkg` in folder `where` (`src/mypkg`: the src layout; else
    mapped with setuptools' package-dir) whose `f()` returns 2 from commit `culprit` on."""
    pyproject = PYPROJECT if where == "src/mypkg" else PYPROJECT.replace(
        "[build-system]", f'[tool.setuptools]\npackage-dir = {{"mypkg" = "{where}"}}\npackages = ["mypkg"]\n[build-system]')
    repo = GitRepo.init(path)
    shas = []
    for i in range(1, n + 1):
        shas.append(repo.commit({"pyproject.toml": pyproject, "n.txt": f"{i}\n",
                                 f"{where}/__init__.py": f"def f():\n    return {2 if i >= culprit else 1}\n"}, f"c{i}"))
    return repo, shas


def venv_with_editable(tmp_path: Path, project: Path) -> Path:
    """A real venv with `pip install -e project`, offline: pip and setuptools are this test
    environment's (a `.pth` names its site-packages), so no build dependency is downloaded."""
    outer = sysconfig.get_paths()["purelib"]
    probe_tools = "import setuptools.command.bdist_wheel, importlib.util as u; assert u.find_spec('pip')"
    if subprocess.run([sys.executable, "-c", probe_tools], capture_output=True).returncode:
        pytest.skip("pip and setuptools >= 70.1 are needed to make an editable install offline")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "test-tools.pth").write_text(outer + "\n")
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--no-build-isolation",
                    "-e", str(project)], check=True, capture_output=True)
    return venv


@pytest.mark.parametrize("where, made", [("src/mypkg", "*.pth"), ("code/mypkg", "__editable___*finder.py")],
                         ids=["src-layout-pth", "package-dir-finder"])
def test_an_editable_install_of_the_users_checkout_is_not_what_the_steps_import(tmp_path: Path, where: str,
                                                                                 made: str) -> None:
    repo, shas = package_history(tmp_path / "proj", 12, culprit=7, where=where)
    venv = venv_with_editable(tmp_path, repo.path)
    assert any(next((venv / "lib").glob("python3*/site-packages")).glob(made))  # what pip wrote: a .pth, a finder
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    before = snapshot(repo.path)
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", PROBE, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[6]} is the first bad commit" in r.stdout
    assert f"imports {where.split('/')[0]} from this checkout" in r.stderr + r.stdout
    assert snapshot(repo.path) == before


def test_an_absolute_pythonpath_into_the_users_checkout_is_not_what_the_steps_import(tmp_path: Path) -> None:
    repo, shas = package_history(tmp_path / "proj", 10, culprit=4, where="src/mypkg")
    elsewhere = tmp_path / "lib"
    (elsewhere / "helper").mkdir(parents=True)
    (elsewhere / "helper" / "__init__.py").write_text("X = 1\n")
    probe = 'python3 -c "import sys, helper, mypkg; sys.exit(0 if mypkg.f() == helper.X else 1)"'
    env = {"PYTHONPATH": f"{repo.path / 'src'}{os.pathsep}{elsewhere}"}
    r = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[-1], "--probe", probe, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{shas[3]} is the first bad commit" in r.stdout  # and `helper`, outside the checkout, still imports
