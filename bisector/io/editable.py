"""Where the user's Python imports the user's checkout from, so that each step imports its own.

`pip install -e .` (and `uv pip install -e`, `poetry install`, `pdm install`...) makes the
environment import the project from the user's checkout: a `.pth` file naming the folder
(`/home/me/proj/src`), or a setuptools finder (`__editable___NAME_finder.py`) mapping each
package to its folder there. A probe that runs `python -c "import mypkg"` in a step's work tree
would then test today's code at every step, whatever the revision (for a `src/` layout; a flat
layout is found through the working directory first). `checkout_imports` finds those folders;
the workspace puts the step's copies of them first on `PYTHONPATH`, which Python searches
before the `.pth` folders and the editable finders.

Only read: the site-packages folders of the active environment (`VIRTUAL_ENV`, `CONDA_PREFIX`,
else the prefix of the `python3` on `PATH`) and the user site. Nothing is imported or run.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

_FINDER = re.compile(r"^MAPPING\s*(?::[^=\n]*)?=\s*(\{.*?\})\s*$", re.M | re.S)
_MAX_FILE = 1 << 20  # a .pth or finder file larger than this is not read


def site_dirs(environ: Mapping[str, str]) -> list[Path]:
    """The site-packages folders the probe's `python` reads `.pth` files from (best effort)."""
    prefixes = [environ.get("VIRTUAL_ENV"), environ.get("CONDA_PREFIX")]
    python = shutil.which("python3", path=environ.get("PATH")) or shutil.which("python", path=environ.get("PATH"))
    if python:
        prefixes.append(str(Path(python).parent.parent))  # <prefix>/bin/python3 (a venv keeps its link)
    dirs: list[Path] = []
    for prefix in filter(None, prefixes):
        dirs += sorted(Path(prefix).glob("lib/python3*/site-packages"))
    home = environ.get("HOME")
    if home:
        dirs += sorted(Path(home).glob(".local/lib/python3*/site-packages"))
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > _MAX_FILE:
            return ""
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _editable_paths(site: Path) -> list[Path]:
    """Folders that the `.pth` files and editable finders of `site` add to the imports."""
    found: list[Path] = []
    for pth in sorted(site.glob("*.pth")):
        for line in _read(pth).splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")):
                found.append(Path(line) if os.path.isabs(line) else site / line)
    for finder in sorted(site.glob("__editable__*finder.py")):
        match = _FINDER.search(_read(finder))
        try:
            mapping = ast.literal_eval(match.group(1)) if match else {}
        except (ValueError, SyntaxError):
            mapping = {}
        if isinstance(mapping, dict):
            found += [Path(p).parent for p in mapping.values() if isinstance(p, str)]
    return found


def checkout_imports(root: Path, environ: Mapping[str, str]) -> list[str]:
    """The folders of the checkout at `root` (relative, `.` for the top) that the environment's
    Python imports from: editable installs, and absolute `PYTHONPATH` entries inside `root`."""
    root = root.resolve()
    paths = [Path(p) for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.isabs(p)]
    for site in site_dirs(environ):
        paths += _editable_paths(site)
    rels = []
    for p in paths:
        try:
            rel = Path(os.path.realpath(p)).relative_to(root)
        except ValueError:
            continue
        if rel.parts[:1] != (".git",):
            rels.append(rel.as_posix())
    return list(dict.fromkeys(rels))


def step_pythonpath(work_tree: Path, root: Path, imports: list[str], environ: Mapping[str, str]) -> str:
    """`PYTHONPATH` for a step: the step's copies of `imports` first, then the user's own
    entries but those inside the checkout at `root` (their copies are among the first)."""
    root = root.resolve()
    kept = []
    for p in environ.get("PYTHONPATH", "").split(os.pathsep):
        inside = bool(p) and os.path.isabs(p) and Path(os.path.realpath(p)).is_relative_to(root)
        if p and not inside:
            kept.append(p)
    return os.pathsep.join(dict.fromkeys([*(str(work_tree / rel) for rel in imports), *kept]))
