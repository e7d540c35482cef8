"""An honest install: the core install has no torch; the extras that need it name it; the README
says what a plain package index gives (acceptance: `pip install .` pulls no torch)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_dependencies_have_no_torch_and_the_extras_do() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[<>=!~\[; ]", d)[0].lower() for d in project["dependencies"]]
    assert "torch" not in names and not any(n.startswith("nvidia") for n in names)
    extras = project["optional-dependencies"]
    for extra in ("ml", "demo", "test"):
        assert any(d.startswith("torch") for d in extras[extra]), extra


def test_readme_says_what_a_plain_index_gives() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c constraints.txt -e '.[demo]' && bisector demo" in readme
    assert "is the **CUDA build**" in readme
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
