"""How probes reach the user's things: the model adapter reference, frozen input files, spec checks.

The adapter contract (docs/probes.md has a complete example). The user names a function:

* `module:function`, imported from the workspace of each step (e.g. `src.serve:load`): the
  commit's own code builds the model; or
* a path to a `.py` file, optionally `path.py:function` (default function `load`): the file is
  read once at session start and frozen, so today's adapter judges every commit.

The function is called as `function(workspace: pathlib.Path)` in a subprocess whose working
directory is the workspace and whose `sys.path` starts with it. It returns a model object offering
what the configured probes need (duck-typed, all optional):

* `generate(prompt: str, *, seed: int | None = None) -> str`: text models (`seed=` is passed
  only when the signature accepts it; otherwise the global RNGs are seeded before the call).
* `predict(input) -> JSON-able`: classifiers; `input` is the case's JSON value.
* `module: torch.nn.Module` (or the returned object is itself an `nn.Module`).
* `sample_batch() -> Tensor | tuple | list | dict`: inputs for one forward pass
  (`module(x)`, `module(*batch)`, `module(**batch)`).
* `targets: Tensor` and/or `loss(outputs, batch) -> scalar Tensor`: for the grad-norm and
  overfit-one-batch checks (default loss: cross-entropy for integer targets, else MSE).

Nothing here imports torch or numpy at module level; the child-side helpers import them only when
the user's objects are already torch/numpy objects.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import os
import random
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from bisector.core.errors import UsageError
from bisector.probes.frozen import digest_of, verify_frozen, write_frozen

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ON_PROBLEM = ("skip", "bad", "abort")


# ---------------------------------------------------------------- parent side: spec helpers


def check_keys(spec: Mapping[str, Any], allowed: Iterable[str], probe_type: str) -> None:
    """Reject unknown keys (typos would otherwise silently fall back to defaults)."""
    allowed = set(allowed) | {"type", "name"}
    for key in spec:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"did you mean `{close[0]}`?" if close else f"use one of {', '.join(sorted(allowed))}"
            raise UsageError(f"unknown key `{key}` in a `{probe_type}` probe: {hint}")


def get_choice(spec: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str, probe_type: str) -> str:
    value = spec.get(key, default)
    if value not in choices:
        raise UsageError(f"`{key}` of a `{probe_type}` probe must be one of {', '.join(choices)}, not {value!r}")
    return value


def get_number(
    spec: Mapping[str, Any], key: str, default: float | None, probe_type: str,
    *, lo: float | None = None, hi: float | None = None, integer: bool = False,
) -> Any:
    value = spec.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        kind = "an integer" if integer else "a number"
        raise UsageError(f"`{key}` of a `{probe_type}` probe must be {kind}, not {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise UsageError(f"`{key}` of a `{probe_type}` probe must be between {lo} and {hi}, not {value!r}")
    return value


def get_on_problem(spec: Mapping[str, Any], key: str, default: str, probe_type: str) -> str:
    return get_choice(spec, key, _ON_PROBLEM, default, probe_type)


def get_python(spec: Mapping[str, Any], probe_type: str, user_cwd: Path) -> str | None:
    """`python = "..."`: the interpreter that loads the model (default: bisector's own).

    A path with a slash is taken relative to the user's checkout; a bare name is looked up on PATH.
    """
    value = spec.get("python")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"`python` of a `{probe_type}` probe must be the path of a Python interpreter")
    if "/" in value:
        # Not resolve(): a virtualenv's python is a symlink, and following it leaves the venv.
        path = os.path.abspath(Path(user_cwd) / value)
        if not os.path.isfile(path):
            raise UsageError(f"`python` of a `{probe_type}` probe not found: {value} (no such file in {user_cwd})")
        return path
    found = shutil.which(value)
    if found is None:
        raise UsageError(f"`python` of a `{probe_type}` probe not found: {value} (not on PATH)")
    return found


@dataclass(frozen=True)
class FrozenInput:
    """An input file read once at session start; probes use `data`, never the path again."""

    source: str  # as the user wrote it
    path: Path  # resolved, for messages only
    data: bytes
    sha256: str

    def text(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{self.source} is not UTF-8 text: save it as UTF-8") from None

    def config(self) -> dict[str, str]:
        return {"path": self.source, "sha256": self.sha256}


def freeze_input(value: Any, key: str, probe_type: str, user_cwd: Path) -> FrozenInput:
    """Read the file named by spec[key] (relative to the user's checkout) now."""
    if not value or not isinstance(value, str):
        raise UsageError(f"a `{probe_type}` probe needs `{key} = \"path/to/file\"`")
    path = (Path(user_cwd) / value).resolve()
    if not path.is_file():
        raise UsageError(f"`{key}` file of a `{probe_type}` probe not found: {value} (no such file in {user_cwd})")
    data = path.read_bytes()
    return FrozenInput(value, path, data, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class CodeRef:
    """A user function: `module:function` from the workspace, or a frozen `.py` file."""

    kind: str  # "module" (imported from the workspace) or "file" (frozen copy)
    target: str  # module name, or path of the frozen copy
    function: str
    source: str  # as the user wrote it
    sha256: str | None = None  # of the frozen file
    data: bytes | None = field(default=None, repr=False, compare=False)  # what the frozen copy must hold

    @classmethod
    def parse(
        cls, value: Any, *, key: str, probe_type: str, user_cwd: Path, frozen_dir: Path,
        default_function: str = "load",
    ) -> "CodeRef":
        example = f"`{key} = \"src.serve:load\"` or `{key} = \"path/to/adapter.py\"`"
        if not value or not isinstance(value, str):
            raise UsageError(f"a `{probe_type}` probe needs {example}")
        head, sep, func = value.rpartition(":")
        if not sep:
            head, func = value, ""
        if head.endswith(".py") or value.endswith(".py"):
            if value.endswith(".py"):
                head, func = value, ""
            return cls._freeze_file(head, func or default_function, value, key, probe_type, user_cwd, frozen_dir)
        if not sep or not _DOTTED.match(head) or not _IDENT.match(func):
            raise UsageError(f"`{key}` of a `{probe_type}` probe must be module:function or a .py file ({example}), not {value!r}")
        return cls("module", head, func, value)

    @classmethod
    def _freeze_file(
        cls, path_text: str, func: str, source: str, key: str, probe_type: str, user_cwd: Path, frozen_dir: Path
    ) -> "CodeRef":
        if not _IDENT.match(func):
            raise UsageError(f"`{key}` of a `{probe_type}` probe names an invalid function {func!r}")
        path = (Path(user_cwd) / path_text).resolve()
        if not path.is_file():
            raise UsageError(f"`{key}` file of a `{probe_type}` probe not found: {path_text} (no such file in {user_cwd})")
        data = path.read_bytes()
        target = write_frozen(Path(frozen_dir), path.name, data, mode=0o644)
        return cls("file", str(target), func, source, digest_of(data), data)

    def config(self) -> dict[str, Any]:
        """Content, not location: the frozen file's hash, not the path of its copy."""
        d: dict[str, Any] = {"ref": self.source, "kind": self.kind, "function": self.function}
        if self.sha256:
            d["sha256"] = self.sha256
        return d

    def to_request(self) -> dict[str, str]:
        """What the probe's child process loads; a frozen copy is verified (or restored) first."""
        if self.kind == "file" and self.sha256:
            verify_frozen(Path(self.target), self.sha256, self.data)
        return {"kind": self.kind, "target": self.target, "function": self.function, "source": self.source}


@dataclass(frozen=True)
class ModelProbeSpec:
    """The keys every model probe (sanity, basic, harm) shares, checked once for all of them.

    (A plain dataclass, not a msgspec Struct: this module also runs on the probe's child side,
    in the user's Python, where only the standard library can be counted on.)"""

    name: str
    model: CodeRef | None
    timeout: float | None
    python: str | None
    on_timeout: str
    on_error: str
    seed: int

    @classmethod
    def parse(
        cls, spec: Mapping[str, Any], probe_type: str, keys: Iterable[str], *, user_cwd: Path, frozen_dir: Path,
        on_error: str = "skip", model_required: bool = True,
    ) -> ModelProbeSpec:
        """Reject unknown keys, then parse the shared ones (`on_error`: this type's default)."""
        check_keys(spec, keys, probe_type)
        model = None
        if model_required or "model" in spec:
            model = CodeRef.parse(spec.get("model"), key="model", probe_type=probe_type, user_cwd=user_cwd,
                                  frozen_dir=frozen_dir)
        return cls(
            name=spec.get("name", probe_type),
            model=model,
            timeout=get_number(spec, "timeout", None, probe_type, lo=0.0),
            python=get_python(spec, probe_type, user_cwd),
            on_timeout=get_on_problem(spec, "on_timeout", "skip", probe_type),
            on_error=get_on_problem(spec, "on_error", on_error, probe_type),
            seed=get_number(spec, "seed", 0, probe_type, integer=True),
        )


# ---------------------------------------------------------------- child side (inside _runner)


def resolve_function(ref: Mapping[str, str]) -> Any:
    """Import the function a CodeRef request names (the workspace is already on sys.path)."""
    if ref["kind"] == "file":
        name = "bisector_frozen_" + re.sub(r"\W", "_", Path(ref["target"]).stem)
        spec = importlib.util.spec_from_file_location(name, ref["target"])
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {ref['source']}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(ref["target"])
    try:
        return getattr(module, ref["function"])
    except AttributeError:
        raise AttributeError(f"{ref['source']}: no function `{ref['function']}`") from None


def seed_all(seed: int) -> None:
    """Seed the RNGs the model may use; torch/numpy only if the user's code already imported them."""
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed % (2**32))
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def accepts_seed(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def call_generate(model: Any, prompt: str, seed: int) -> str:
    """One generation, seeded: `seed=` when generate() takes it, global RNGs otherwise (and too)."""
    seed_all(seed)
    if accepts_seed(model.generate):
        out = model.generate(prompt, seed=seed)
    else:
        out = model.generate(prompt)
    if not isinstance(out, str):
        raise TypeError(f"generate() must return a str, got {type(out).__name__}")
    return out


# The torch side of the contract: how a batch is fed, which output is judged, the default loss.


def module_of(model: Any) -> Any:
    """The model's nn.Module: the object itself or its `.module`; None for non-torch models."""
    if "torch" not in sys.modules:
        return None  # the user's code never imported torch: it cannot be a torch model
    nn = sys.modules["torch"].nn
    if isinstance(model, nn.Module):
        return model
    module = getattr(model, "module", None)
    return module if isinstance(module, nn.Module) else None


def forward(module: Any, batch: Any) -> Any:
    """`module(**batch)` for a dict, `module(*batch)` for a tuple or list, else `module(batch)`."""
    if isinstance(batch, Mapping):
        return module(**batch)
    if isinstance(batch, (tuple, list)):
        return module(*batch)
    return module(batch)


def first_tensor(value: Any) -> Any:
    """The tensor a probe judges: the value itself, `["logits"]`/`.logits`, or the first tensor."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        if isinstance(value.get("logits"), torch.Tensor):
            return value["logits"]
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        for v in value:
            if isinstance(v, torch.Tensor):
                return v
    logits = getattr(value, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else None


def default_loss(model: Any, output: Any, batch: Any) -> tuple[Any, str | None]:
    """(loss, kind): `model.loss(output, batch)`; else from `model.targets` cross-entropy for
    integer targets and outputs with a class dimension, MSE otherwise; else (None, None)."""
    import torch
    import torch.nn.functional as F

    if callable(getattr(model, "loss", None)) and not isinstance(model, torch.nn.Module):
        return model.loss(output, batch), "model.loss"
    targets = getattr(model, "targets", None)
    if callable(targets) and not isinstance(targets, torch.Tensor):
        targets = targets()
    y = first_tensor(output)
    if isinstance(targets, torch.Tensor) and y is not None:
        if not targets.is_floating_point() and y.dim() >= 2:
            return F.cross_entropy(y.float(), targets.long()), "cross_entropy"
        return F.mse_loss(y.float(), targets.float().reshape(y.shape)), "mse"
    return None, None


def to_jsonable(value: Any) -> Any:
    """Tensors, numpy values and tuples to plain JSON values (predict() outputs)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # torch.Tensor, numpy arrays and scalars
    if callable(tolist):
        return to_jsonable(tolist())
    return repr(value)


def describe_exception(exc: BaseException) -> dict[str, str]:
    """One line for summaries, and the traceback's tail for the evidence."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    text = "".join(lines)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return {"error": f"{type(exc).__name__}: {first}".rstrip(": "), "traceback": text[-4000:]}
