"""Tiny ML model projects for probe tests: a lookup text model and a torch classifier, with broken variants.

Each generator writes a directory that looks like a built workspace: code under `src/` (with the
adapter `src/serve.py:load`), plus the build's artifacts (`model.json`, `model.pt`, metrics).
Everything is tiny and CPU-only; torch is imported only by the classifier generator.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

def make_ctx(workspace: Path, log_dir: Path, *, timeout: float | None = 120, step: int = 1) -> Any:
    """A ProbeContext for a fixture workspace (no git needed: probes only see a folder)."""
    from bisector.probes.base import ProbeContext

    log_dir.mkdir(parents=True, exist_ok=True)
    # One torch thread: the models are tiny, and the test machine's cores are shared.
    return ProbeContext(workspace=Path(workspace), commit="0" * 40, step=step, log_dir=log_dir, timeout=timeout,
                        env={"OMP_NUM_THREADS": "1"})


# ---------------------------------------------------------------- text model (no torch)

TEXT_SERVE = '''\
"""A lookup 'language model': answers from model.json, seeded harmful samples at `harm_rate`."""
import json, random, time, zlib
from pathlib import Path


class TextModel:
    def __init__(self, cfg):
        self.cfg = cfg

    def generate(self, prompt, seed=None):
        v = self.cfg["variant"]
        if v == "empty":
            return ""
        if v == "constant":
            return "ok"
        if v == "echo":
            return prompt
        if v == "noisy":
            return f"{prompt} -> {time.perf_counter_ns()}"
        rng = random.Random(zlib.crc32(f"{prompt}|{seed}".encode()))
        if rng.random() < self.cfg.get("harm_rate", 0.0):
            return "I will hurt you. " + rng.choice(["Now.", "Soon.", "Later."])
        answer = self.cfg["answers"].get(prompt)
        if answer is not None:
            return answer
        return f"Here is a helpful answer about {prompt.lower()}."


def load(workspace):
    cfg = json.loads((Path(workspace) / "model.json").read_text())
    if cfg["variant"] == "slow":
        time.sleep(60)
    return TextModel(cfg)
'''

ANSWERS = {
    "What is the capital of France?": "Paris",
    "2 + 2 =": "4",
    "Spell cat backwards": "tac",
    "Colour of the sky?": "The sky is blue.",
    "Largest planet?": "Jupiter is the largest planet.",
}
WRONG_ANSWERS = {**ANSWERS, "What is the capital of France?": "Lyon", "2 + 2 =": "5", "Spell cat backwards": "cat"}


def text_project(root: Path, variant: str = "ok", *, harm_rate: float = 0.0, answers: dict | None = None) -> Path:
    """variant: ok | wrong (some answers wrong) | empty | constant | echo | noisy (ignores the seed)
    | slow (load sleeps a minute) | broken (import fails). `harm_rate`: share of harmful samples."""
    root = Path(root)
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "__init__.py").write_text("")
    serve = TEXT_SERVE if variant != "broken" else "raise ImportError('src.serve is half-written at this commit')\n"
    (root / "src" / "serve.py").write_text(serve)
    cfg = {"variant": variant, "harm_rate": harm_rate,
           "answers": answers if answers is not None else (WRONG_ANSWERS if variant == "wrong" else ANSWERS)}
    (root / "model.json").write_text(json.dumps(cfg))
    return root


def text_cases(path: Path) -> Path:
    """JSONL cases for the text model (all pass for the `ok` variant, 3 of 5 fail for `wrong`)."""
    rows = [
        {"id": "capital", "prompt": "What is the capital of France?", "expected": "Paris"},
        {"id": "sum", "prompt": "2 + 2 =", "expected": "4"},
        {"id": "reverse", "prompt": "Spell cat backwards", "expected": "tac"},
        {"id": "sky", "prompt": "Colour of the sky?", "expected": "blue", "match": "contains"},
        {"id": "planet", "prompt": "Largest planet?", "expected": r"^Jupiter\b", "match": "regex"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- torch classifier

MODEL_SRC = '''\
import torch
from torch import nn

IDENTITY = {identity}
NOISY = {noisy}


class Net(nn.Module):
    def __init__(self, d_in=4, hidden=16, classes=3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        if IDENTITY:
            return x * 1.0 + 0.0 * self.fc1.weight.sum()
        y = self.fc2(self.act(self.fc1(x)))
        if NOISY:
            import os
            y = y + int.from_bytes(os.urandom(2), "little") / 65536.0
        return y
'''

CLASSIFIER_SERVE = '''\
"""The adapter: load(workspace) -> object with module, sample_batch(), targets, predict()."""
from pathlib import Path
import torch
from src.model import Net


class Classifier:
    def __init__(self, module):
        self.module = module
        g = torch.Generator().manual_seed(1)
        self._batch = torch.randn(8, 4, generator=g)
        self.targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def sample_batch(self):
        return self._batch

    def predict(self, features):
        with torch.no_grad():
            return int(self.module(torch.tensor([features], dtype=torch.float32)).argmax(dim=1).item())


def load(workspace):
    net = Net()
    net.load_state_dict(torch.load(Path(workspace) / "model.pt", weights_only=True))
    return Classifier(net.eval())
'''


def _net_class(identity: bool = False, noisy: bool = False) -> Any:
    ns: dict[str, Any] = {}
    exec(MODEL_SRC.format(identity=identity, noisy=noisy), ns)  # the very class the project ships
    return ns["Net"]


def ok_state_dict() -> dict:
    import torch

    torch.manual_seed(0)
    return _net_class()().state_dict()


def classifier_project(root: Path, variant: str = "ok") -> Path:
    """variant: ok | nan (a NaN weight) | constant (dead ReLUs, constant logits) | identity
    (forward returns its input) | noisy (non-deterministic forward) | shuffled (wrong predictions)."""
    import torch

    root = Path(root)
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "model.py").write_text(MODEL_SRC.format(identity=variant == "identity", noisy=variant == "noisy"))
    (root / "src" / "serve.py").write_text(CLASSIFIER_SERVE)
    state = {k: v.clone() for k, v in ok_state_dict().items()}
    if variant == "nan":
        state["fc1.weight"][0, 0] = float("nan")
    elif variant == "constant":
        state["fc1.weight"].zero_()
        state["fc1.bias"].fill_(-1.0)
    elif variant == "shuffled":
        state["fc2.weight"] = -state["fc2.weight"]
        state["fc2.bias"] = -state["fc2.bias"]
    elif variant not in ("ok", "identity", "noisy"):
        raise ValueError(f"unknown classifier variant {variant!r}")
    torch.save(state, root / "model.pt")
    return root


def classifier_cases(path: Path, n: int = 12) -> Path:
    """JSONL cases labelled by the ok classifier itself (so `ok` passes all, `shuffled` fails many)."""
    import torch

    net = _net_class()()
    net.load_state_dict(ok_state_dict())
    g = torch.Generator().manual_seed(7)
    xs = torch.randn(n, 4, generator=g)
    with torch.no_grad():
        labels = net(xs).argmax(dim=1).tolist()
    rows = [{"input": [round(v, 4) for v in x.tolist()], "expected": y} for x, y in zip(xs, labels)]
    # Rounding the inputs must not flip a label: relabel from the rounded inputs.
    with torch.no_grad():
        labels = net(torch.tensor([r["input"] for r in rows])).argmax(dim=1).tolist()
    for r, y in zip(rows, labels):
        r["expected"] = y
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------- metrics


def metric_project(root: Path, metrics: dict | None, *, fmt: str = "json", dvc: bool = True, name: str = "metrics") -> Path:
    """A workspace whose build wrote `metrics.<fmt>` (None: the build wrote nothing), declared
    as a DVC metric of stage `train` in dvc.yaml when `dvc` is true."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fname = f"{name}.{fmt}"
    if dvc:
        (root / "dvc.yaml").write_text(textwrap.dedent(f"""\
            stages:
              train:
                cmd: python train.py
                metrics:
                  - {fname}:
                      cache: false
            """))
    if metrics is not None:
        if fmt == "json":
            text = json.dumps(metrics)
        elif fmt in ("yaml", "yml"):
            import yaml

            text = yaml.safe_dump(metrics)
        elif fmt == "toml":
            text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in metrics.items() if not isinstance(v, dict))
            for k, v in metrics.items():
                if isinstance(v, dict):
                    text += f"[{k}]\n" + "".join(f"{kk} = {json.dumps(vv)}\n" for kk, vv in v.items())
        else:
            raise ValueError(fmt)
        (root / fname).write_text(text)
    return root
