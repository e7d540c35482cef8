"""The ML demo project: DVC-tracked data, a torch model trained by `dvc repro`, a metric probe.

A colour classifier (a torch linear model over r, g, b) trained on `data/train.csv`, both
data files tracked by DVC with a local remote. Two scenarios:
- "data": one commit adds an annotation batch whose labels are wrong, together with a
  harmless-looking refactor of the loader; testing the crossings shows the data broke it.
- "code": one commit refactors the loader and reads the channels as BGR (a code culprit).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

N_COMMITS = 24
CULPRIT = 15  # 1-based: "Add annotation batch 2" (bad labels) + loader refactor

LOADER_V1 = '''\
"""Reads colour samples (r,g,b,label) as tensors."""
import torch

LABELS = ["blue", "green", "red"]


def load(path):
    xs, ys = [], []
    for line in open(path):
        r, g, b, label = line.strip().split(",")
        xs.append([float(r) / 255, float(g) / 255, float(b) / 255])
        ys.append(LABELS.index(label))
    return torch.tensor(xs), torch.tensor(ys)
'''

LOADER_BGR = '''\
"""Reads colour samples (r,g,b,label) as tensors (refactored: channels as in the camera SDK)."""
import torch

LABELS = ["blue", "green", "red"]


def _row(line):
    *channels, label = line.strip().split(",")
    return [float(v) / 255 for v in reversed(channels)], LABELS.index(label)


def load(path):
    rows = [_row(line) for line in open(path) if line.strip()]
    return torch.tensor([x for x, _ in rows]), torch.tensor([y for _, y in rows])
'''

LOADER_V2 = '''\
"""Reads colour samples (r,g,b,label) as tensors (refactored: one comprehension)."""
import torch

LABELS = ["blue", "green", "red"]


def _row(line):
    *rgb, label = line.strip().split(",")
    return [float(v) / 255 for v in rgb], LABELS.index(label)


def load(path):
    rows = [_row(line) for line in open(path) if line.strip()]
    return torch.tensor([x for x, _ in rows]), torch.tensor([y for _, y in rows])
'''

TRAIN = '''\
"""Train a linear colour classifier; write model.pt and metrics.json."""
import json

import torch

from loader import load

params = dict(line.split(":", 1) for line in open("params.yaml") if ":" in line)
epochs, lr = int(params["epochs"]), float(params["lr"])
torch.manual_seed(0)
x, y = load("data/train.csv")
model = torch.nn.Linear(3, 3)
for _ in range(epochs):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
torch.save(model.state_dict(), "model.pt")
# Evaluation reads the raw RGB rows itself, as the production service sends them.
rows = [line.strip().split(",") for line in open("data/test.csv") if line.strip()]
xt = torch.tensor([[float(v) / 255 for v in r[:3]] for r in rows])
yt = torch.tensor([["blue", "green", "red"].index(r[3]) for r in rows])
accuracy = (model(xt).argmax(1) == yt).float().mean().item()
json.dump({"accuracy": round(accuracy, 4), "train_loss": round(loss.item(), 4)}, open("metrics.json", "w"))
print(f"accuracy {accuracy:.3f}")
'''

DVC_YAML = '''\
stages:
  train:
    cmd: python train.py
    deps: [train.py, loader.py, data/train.csv, data/test.csv]
    params: [epochs, lr]
    outs: [model.pt]
    metrics:
    - metrics.json:
        cache: false
'''

BISECTOR_TOML = '''\
# Build: `dvc repro` (the default in a DVC repository). Probe: the accuracy DVC records.
[[probes]]
type = "metric"
condition = "accuracy >= 0.9"
'''

CENTERS = {"red": (200, 40, 40), "green": (40, 190, 60), "blue": (30, 60, 210)}
WRONG = {"red": "blue", "green": "red", "blue": "green"}  # the bad batch's annotations


def _samples(rng: random.Random, n: int, wrong_labels: bool = False) -> str:
    lines = []
    for _ in range(n):
        label = rng.choice(sorted(CENTERS))
        rgb = ",".join(f"{max(0, min(255, v + rng.gauss(0, 25))):.0f}" for v in CENTERS[label])
        lines.append(f"{rgb},{WRONG[label] if wrong_labels else label}")
    return "\n".join(lines) + "\n"


def make_ml_demo_repo(
    root: Path, n_commits: int = N_COMMITS, culprit: int = CULPRIT, scenario: str = "data"
) -> tuple[Path, list[str]]:
    """Create the project under `root` (repo, DVC cache and remote); return it and its commits.

    scenario "data": the culprit adds a badly annotated batch (and tidies the loader);
    scenario "code": the culprit's loader refactor reads the channels as BGR.
    """
    repo = root / "colour-model"
    remote = root / "dvc-remote"
    repo.mkdir(parents=True)
    remote.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
        "GIT_COMMITTER_NAME": "Demo", "GIT_COMMITTER_EMAIL": "demo@example.com",
        "DVC_NO_ANALYTICS": "1",
    }
    dvc = str(Path(sys.executable).with_name("dvc"))
    if not Path(dvc).exists():
        dvc = "dvc"

    def sh(*args: str) -> None:
        subprocess.run(args, cwd=repo, env=env, check=True, capture_output=True)

    sh("git", "init", "-q", "-b", "main")
    sh("git", "config", "commit.gpgsign", "false")
    sh(dvc, "init", "-q")
    sh(dvc, "remote", "add", "-d", "storage", str(remote))
    rng = random.Random(11)
    train = _samples(rng, 300)
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text(train)
    (repo / "data" / "test.csv").write_text(_samples(rng, 200))
    (repo / "loader.py").write_text(LOADER_V1)
    (repo / "train.py").write_text(TRAIN)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "params.yaml").write_text("epochs: 150\nlr: 2.0\n")
    (repo / "bisector.toml").write_text(BISECTOR_TOML)
    (repo / ".gitignore").write_text("__pycache__/\n")
    sh(dvc, "add", "-q", "data/train.csv", "data/test.csv")
    shas = []
    for i in range(1, n_commits + 1):
        message = f"Experiment notes {i}"
        if i == 1:
            message = "Colour classifier: torch model, DVC pipeline, accuracy metric"
        elif i == 6:
            (repo / "params.yaml").write_text("epochs: 200\nlr: 2.0\n")
            message = "Train longer"
        elif i == 10:
            train += _samples(rng, 150)
            (repo / "data" / "train.csv").write_text(train)
            sh(dvc, "add", "-q", "data/train.csv")
            message = "Add annotation batch 1"
        elif i == culprit and scenario == "code":
            (repo / "loader.py").write_text(LOADER_BGR)
            message = "Refactor loader: channel order as in the camera SDK"
        elif i == culprit:
            train += _samples(rng, 300, wrong_labels=True)
            (repo / "data" / "train.csv").write_text(train)
            sh(dvc, "add", "-q", "data/train.csv")
            (repo / "loader.py").write_text(LOADER_V2)
            message = "Add annotation batch 2; tidy the loader"
        else:
            with open(repo / "NOTES.md", "a") as f:
                f.write(f"- experiment {i}\n")
        stamp = f"2026-02-{1 + i // 2:02d}T10:{i:02d}:00+00:00"
        sh("git", "add", "-A")
        subprocess.run(["git", "commit", "-q", "-m", message], cwd=repo, check=True, capture_output=True,
                       env={**env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
        shas.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                                   text=True).stdout.strip())
    sh(dvc, "push", "-q")  # the current data; older data versions stay in the local cache
    return repo, shas
