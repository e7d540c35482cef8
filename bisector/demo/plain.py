"""`bisector demo`: a small model project with a planted regression, bisected end to end.

The default demo is the ML project of `demo_ml.py`. The plain demo (`--plain`), below, is a nearest-centroid colour classifier: `train.py` (the build) fits
centroids from `data/train.csv` through `loader.py`; `check.py` (the probe) measures
accuracy on held-out data and exits 1 below 0.9. One of 40 commits, a "harmless
refactor" of the loader, swaps the RGB channels to BGR.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from bisector.demo.ml import CULPRIT as ML_CULPRIT
from bisector.demo.ml import make_ml_demo_repo
from bisector.review.render import CliHandler, print_result
from bisector.review.tables import render_journal
from bisector.run.session import RunOptions, Session

N_COMMITS = 40
CULPRIT = 27  # 1-based index of the commit that swaps the channels

LOADER_GOOD = '''\
"""Reads colour samples: r,g,b,label per line."""


def load(path):
    rows = []
    for line in open(path):
        r, g, b, label = line.strip().split(",")
        rows.append(((float(r), float(g), float(b)), label))
    return rows
'''

LOADER_BAD = '''\
"""Reads colour samples: r,g,b,label per line (refactored: unpack channels in one go)."""


def load(path):
    rows = []
    for line in open(path):
        *channels, label = line.strip().split(",")
        rows.append((tuple(float(c) for c in reversed(channels)), label))
    return rows
'''

TRAIN = '''\
"""Build: fit one centroid per label and write model.json."""
import json

from loader import load

sums = {}
for x, label in load("data/train.csv"):
    s = sums.setdefault(label, [0.0, 0.0, 0.0, 0])
    for i in range(3):
        s[i] += x[i]
    s[3] += 1
model = {label: [s[i] / s[3] for i in range(3)] for label, s in sums.items()}
json.dump(model, open("model.json", "w"), indent=1)
'''

CHECK = '''\
"""Probe: accuracy of model.json on held-out data (raw, not through the loader); exit 1 below 0.9."""
import json
import sys

model = json.load(open("model.json"))
ok = n = 0
for line in open("data/test.csv"):
    r, g, b, label = line.strip().split(",")
    x = (float(r), float(g), float(b))
    guess = min(model, key=lambda k: sum((a - c) ** 2 for a, c in zip(x, model[k])))
    ok += guess == label
    n += 1
acc = ok / n
print(f"accuracy {acc:.3f} on {n} samples")
sys.exit(0 if acc >= 0.9 else 1)
'''


def _samples(rng: random.Random, n: int) -> str:
    centers = {"red": (200, 40, 40), "green": (40, 190, 60), "blue": (30, 60, 210)}
    lines = []
    for _ in range(n):
        label = rng.choice(sorted(centers))
        c = centers[label]
        lines.append(",".join(f"{max(0, min(255, v + rng.gauss(0, 25))):.0f}" for v in c) + f",{label}")
    return "\n".join(lines) + "\n"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def make_demo_repo(root: Path, n_commits: int = N_COMMITS, culprit: int = CULPRIT) -> tuple[Path, list[str]]:
    """Create the demo repository under `root`; return it and its commit shas (oldest first)."""
    repo = root / "colour-model"
    repo.mkdir(parents=True)
    env_cfg = ["-c", "user.name=Demo", "-c", "user.email=demo@example.com", "-c", "commit.gpgsign=false"]
    _git(repo, "init", "-q", "-b", "main")
    rng = random.Random(7)
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text(_samples(rng, 300))
    (repo / "data" / "test.csv").write_text(_samples(rng, 200))
    (repo / "loader.py").write_text(LOADER_GOOD)
    (repo / "train.py").write_text(TRAIN)
    (repo / "check.py").write_text(CHECK)
    (repo / ".gitignore").write_text("model.json\n__pycache__/\n")
    (repo / "bisector.toml").write_text(
        '[build]\ncommand = "python train.py"\ntimeout = 60\n\n'
        '[probe]\nrun = "python check.py"\ntimeout = 60\n'
    )
    shas = []
    for i in range(1, n_commits + 1):
        if i > 1:
            notes = repo / "NOTES.md"
            with open(notes, "a") as f:
                f.write(f"- change {i}\n")
        if i == culprit:
            (repo / "loader.py").write_text(LOADER_BAD)
        message = "Refactor loader: unpack channels in one go" if i == culprit else f"Change {i}: notes"
        if i == 1:
            message = "Colour classifier: loader, training, accuracy check"
        _git(repo, "add", "-A")
        subprocess.run(
            ["git", *env_cfg, "-C", str(repo), "commit", "-q", "-m", message,
             "--date", f"2026-01-{1 + i // 2:02d}T12:{i % 60:02d}:00"],
            check=True,
            capture_output=True,
            env={**os.environ, "GIT_COMMITTER_DATE": f"2026-01-{1 + i // 2:02d}T12:{i % 60:02d}:00"},
        )
        shas.append(subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip())
    return repo, shas


def run_demo(keep: bool = False, plain: bool = False, scenario: str = "data") -> int:
    """Build the demo project in a temporary folder, bisect it, print the result and the journal.

    The default is the ML project (DVC data, torch model, metric probe, code-vs-data
    attribution); `plain` is the git-only project (a build command and a command probe).
    """
    root = Path(tempfile.mkdtemp(prefix="bisector-demo-"))
    try:
        if plain:
            repo, shas = make_demo_repo(root)
            culprit = shas[CULPRIT - 1]
            click.echo(f"Demo project: {repo} ({len(shas)} commits; one of them breaks the model)")
            click.echo(f"$ bisector run --good {shas[0][:10]} --bad main   (build and probe from bisector.toml)\n")
        else:
            click.echo("Creating the demo project (git + DVC data + a torch model)...", err=True)
            repo, shas = make_ml_demo_repo(root, scenario=scenario)
            culprit = shas[ML_CULPRIT - 1]
            click.echo(
                f"Demo project: {repo}\n  {len(shas)} commits; `dvc repro` trains a torch colour classifier;\n"
                "  the probe is `accuracy >= 0.9` on the metrics DVC records. Somewhere the accuracy dropped\n"
                f"  (scenario: {scenario})."
            )
            click.echo(f"$ bisector run --good {shas[0][:10]} --bad main\n")
        cwd = os.getcwd()
        os.chdir(repo)  # the probe is frozen from the current checkout, as for a user
        try:
            session = Session(RunOptions(repo=repo, bad="main", goods=[shas[0]]), CliHandler())
            result = session.run()
        finally:
            os.chdir(cwd)
        print_result(repo, result)
        click.echo("\n$ bisector journal\n")
        click.echo(render_journal(repo, None, "table"))
        if result.culprit == culprit:
            click.echo(f"\nThe planted regression (commit {shas.index(culprit) + 1} of {len(shas)}) was found.")
            return 0
        click.echo("\nUnexpected: the planted regression was not found.")
        return 1
    finally:
        if keep:
            click.echo(f"\nKept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
