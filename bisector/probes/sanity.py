"""The `sanity` probe: does the model load, and are its weights, forward pass and outputs sane?

Parent side: `SanityProbe` (config, verdict). Child side: `measure()`, run by `_runner` in a
subprocess with the workspace on sys.path; it imports torch only when the model has a module or a
checkpoint is configured.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.probes import adapter
from bisector.probes._runner import launch, problem_observation
from bisector.probes.base import Observation, ProbeContext
from bisector.core.model import Verdict

DESCRIPTION = "model loads; weights, forward pass and generations are finite, varied and not the input"
KEYS = (
    "model", "checkpoint", "expected_shape", "determinism", "seed", "overfit", "prompts",
    "max_dead_fraction", "timeout", "on_timeout", "on_error", "python",
)
DEFAULT_PROMPTS = ("Hello", "The quick brown fox", "1 + 1 =")
OVERFIT_DEFAULTS = {"steps": 100, "lr": 0.01, "threshold": 0.1}


class SanityProbe:
    """Verdict: BAD when any check fails; SKIP when the model offers nothing to check; else GOOD."""

    cost = 2.0

    def __init__(self, spec: Mapping[str, Any], *, user_cwd: Path, frozen_dir: Path):
        t = "sanity"
        # A model that does not load is exactly what this probe reports: bad by default.
        common = adapter.ModelProbeSpec.parse(spec, t, KEYS, user_cwd=user_cwd, frozen_dir=frozen_dir, on_error="bad",
                                              model_required=False)
        self.name, self.model, self.seed = common.name, common.model, common.seed
        self.timeout, self.python = common.timeout, common.python
        self.on_timeout, self.on_error = common.on_timeout, common.on_error
        self.checkpoint = spec.get("checkpoint")
        if self.model is None and not self.checkpoint:
            raise UsageError("a `sanity` probe needs `model = \"module:function\"` or `checkpoint = \"path\"` (or both)")
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            raise UsageError("`checkpoint` of a `sanity` probe must be a path relative to the workspace")
        shape = spec.get("expected_shape")
        if shape is not None and (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
            raise UsageError("`expected_shape` of a `sanity` probe must be a list of integers (-1 for any size)")
        self.expected_shape = shape
        self.determinism = bool(spec.get("determinism", False))
        self.overfit = _overfit_config(spec.get("overfit", False))
        prompts = spec.get("prompts", list(DEFAULT_PROMPTS))
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise UsageError("`prompts` of a `sanity` probe must be a non-empty list of strings")
        self.prompts = prompts
        self.max_dead_fraction = adapter.get_number(spec, "max_dead_fraction", None, t, lo=0.0, hi=1.0)

    def params(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "expected_shape": self.expected_shape,
            "determinism": self.determinism,
            "seed": self.seed,
            "overfit": self.overfit,
            "prompts": self.prompts,
        }

    def config(self) -> dict[str, Any]:
        return {
            "type": "sanity",
            "model": self.model.config() if self.model else None,
            **self.params(),
            "max_dead_fraction": self.max_dead_fraction,
            "timeout": self.timeout, "python": self.python,
            "on_timeout": self.on_timeout,
            "on_error": self.on_error,
        }

    def run(self, ctx: ProbeContext) -> Observation:
        timeout = self.timeout if self.timeout is not None else ctx.timeout
        outcome = launch(
            "sanity", ctx=ctx, name=self.name, model=self.model.to_request() if self.model else None,
            params=self.params(), timeout=timeout, seed=self.seed, python=self.python,
        )
        failed = problem_observation(outcome, probe=self.name, on_timeout=self.on_timeout, on_error=self.on_error)
        if failed is not None:
            return failed
        return self.judge(outcome.data, duration=outcome.duration, log=str(outcome.log))

    def judge(self, data: dict[str, Any], *, duration: float = 0.0, log: str | None = None) -> Observation:
        checks: dict[str, dict[str, Any]] = dict(data.get("checks", {}))
        dead = data.get("dead_fraction")
        if self.max_dead_fraction is not None and isinstance(dead, (int, float)):
            checks["dead_activations"] = {
                "ok": dead <= self.max_dead_fraction,
                "detail": f"{dead:.0%} of ReLU units dead (max {self.max_dead_fraction:.0%})",
            }
        failed = [name for name, c in checks.items() if c.get("ok") is False]
        evidence = {**data, "checks": checks, "failed": failed}
        if failed:
            details = "; ".join(f"{n}: {checks[n].get('detail', '')}".rstrip(": ") for n in failed)
            verdict, summary = Verdict.BAD, f"{len(failed)} of {len(checks)} checks failed: {details}"
        elif not checks:
            verdict = Verdict.SKIP
            summary = "nothing to check: the model offers neither .module, generate() nor a checkpoint"
        else:
            extras = []
            if isinstance(dead, (int, float)):
                extras.append(f"dead {dead:.0%}")
            if isinstance(data.get("grad_norm"), (int, float)):
                extras.append(f"grad norm {data['grad_norm']:.3g}")
            verdict = Verdict.GOOD
            passed = sum(1 for c in checks.values() if c.get("ok"))
            summary = f"{passed} checks passed" + (f" ({', '.join(extras)})" if extras else "")
        return Observation(probe=self.name, verdict=verdict, summary=summary[:300], evidence=evidence,
                           duration=duration, log=log)


def _overfit_config(value: Any) -> dict[str, Any] | None:
    if value is False or value is None:
        return None
    if value is True:
        return dict(OVERFIT_DEFAULTS)
    if not isinstance(value, Mapping):
        raise UsageError("`overfit` of a `sanity` probe must be true or a table {steps = 100, lr = 0.01, threshold = 0.1}")
    adapter.check_keys(value, OVERFIT_DEFAULTS, "sanity.overfit")
    cfg = {**OVERFIT_DEFAULTS, **value}
    adapter.get_number(cfg, "steps", None, "sanity.overfit", lo=1, integer=True)
    adapter.get_number(cfg, "lr", None, "sanity.overfit", lo=0.0)
    adapter.get_number(cfg, "threshold", None, "sanity.overfit")
    return {k: cfg[k] for k in OVERFIT_DEFAULTS}


# ---------------------------------------------------------------- child side


def measure(model: Any, params: dict[str, Any], workspace: Path) -> dict[str, Any]:
    """All checks in one process (torch is imported once). Returns JSON-able data."""
    out: dict[str, Any] = {"checks": {}}
    checks = out["checks"]
    if params.get("checkpoint"):
        _check_checkpoint(workspace / params["checkpoint"], checks, out)
    if model is None:
        return out
    module = adapter.module_of(model)
    if module is not None:
        _check_module(model, module, params, checks, out)
    if callable(getattr(model, "generate", None)):
        _check_generate(model, params, checks, out)
    return out


def _check_checkpoint(path: Path, checks: dict, out: dict) -> None:
    import torch

    t0 = time.monotonic()
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a missing or unsafe checkpoint is a failed check, not a crash
        checks["checkpoint_loads"] = {"ok": False, "detail": f"{path.name}: {adapter.describe_exception(exc)['error'][:200]}"}
        return
    tensors = list(_tensors(state))
    bad = [name for name, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]
    checks["checkpoint_loads"] = {"ok": True, "detail": f"{len(tensors)} tensors in {time.monotonic() - t0:.2f}s"}
    checks["checkpoint_finite"] = {"ok": not bad, "detail": ("non-finite: " + ", ".join(bad[:5])) if bad else ""}
    out["checkpoint_tensors"] = len(tensors)


def _tensors(obj: Any, prefix: str = "") -> Any:
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{i}" if prefix else str(i))


def _check_module(model: Any, module: Any, params: dict, checks: dict, out: dict) -> None:
    import torch

    named = list(module.named_parameters())
    bad = [n for n, p in named if not torch.isfinite(p.detach()).all()]
    out["n_parameters"] = sum(p.numel() for _, p in named)
    checks["parameters_finite"] = {"ok": not bad, "detail": ("non-finite: " + ", ".join(bad[:5])) if bad else ""}
    if not callable(getattr(model, "sample_batch", None)):
        out["forward"] = "skipped: the model offers no sample_batch()"
        return
    seed = int(params.get("seed", 0))
    batch = model.sample_batch()
    x = adapter.first_tensor(batch)
    module.eval()
    dead = _DeadActivations(module)
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            raw = adapter.forward(module, batch)
    except Exception as exc:  # a forward pass that raises is a failed check of this commit
        checks["forward_runs"] = {"ok": False, "detail": adapter.describe_exception(exc)["error"][:200]}
        return
    finally:
        dead.remove()
    y = adapter.first_tensor(raw)
    if y is None:
        checks["forward_output"] = {"ok": False, "detail": f"forward returned no tensor ({type(raw).__name__})"}
        return
    yf = y.detach().float()
    out["output_shape"] = list(y.shape)
    finite = bool(torch.isfinite(yf).all())
    checks["forward_finite"] = {"ok": finite, "detail": "" if finite else f"{int((~torch.isfinite(yf)).sum())} non-finite outputs"}
    if finite and yf.numel():
        out["output_stats"] = {"mean": yf.mean().item(), "std": yf.std().item() if yf.numel() > 1 else 0.0,
                               "min": yf.min().item(), "max": yf.max().item()}
        # Constant: every example gives the same output (relative to the output's scale).
        ref = yf[0:1] if yf.dim() > 0 and yf.shape[0] > 1 else yf.reshape(-1)[0:1]
        spread = (yf - ref).abs().max().item()
        scale = yf.abs().max().item()
        constant = spread <= 1e-6 * scale or spread == 0.0
        what = "across the batch" if yf.dim() > 0 and yf.shape[0] > 1 else "across elements"
        checks["forward_non_constant"] = {"ok": not constant, "detail": f"output constant {what}" if constant else ""}
        if x is not None and x.shape == y.shape and x.is_floating_point():
            copy = bool(torch.allclose(yf, x.detach().float()))
            checks["output_not_input"] = {"ok": not copy, "detail": "output equals the input" if copy else ""}
    shape = params.get("expected_shape")
    if shape is not None:
        match = len(shape) == y.dim() and all(e in (-1, a) for e, a in zip(shape, y.shape))
        checks["output_shape"] = {"ok": match, "detail": "" if match else f"got {list(y.shape)}, expected {shape}"}
    out["dead_fraction"], out["dead_by_layer"] = dead.summary()
    if params.get("determinism"):
        torch.manual_seed(seed)
        with torch.no_grad():
            y2 = adapter.first_tensor(adapter.forward(module, model.sample_batch()))
        same = y2 is not None and y2.shape == y.shape and bool(torch.allclose(y2, y, rtol=0.0, atol=0.0, equal_nan=True))
        checks["deterministic_forward"] = {"ok": same, "detail": "" if same else "two forward passes with the same seed differ"}
    if finite:  # gradients and training of a non-finite forward only repeat the failure
        try:
            _check_gradients(model, module, batch, params, checks, out)
        except Exception as exc:  # the loss or backward raises at this commit: a failed check
            checks["gradients_run"] = {"ok": False, "detail": adapter.describe_exception(exc)["error"][:200]}


class _DeadActivations:
    """Forward hooks on ReLU modules: a unit is dead when it is zero for every example in the batch."""

    def __init__(self, module: Any):
        import torch

        self.stats: dict[str, tuple[int, int]] = {}
        self.handles = []
        for name, sub in module.named_modules():
            if isinstance(sub, (torch.nn.ReLU, torch.nn.ReLU6)):
                self.handles.append(sub.register_forward_hook(self._hook(name or "relu")))

    def _hook(self, name: str) -> Any:
        def hook(_mod: Any, _inp: Any, output: Any) -> None:
            if output.dim() < 2:
                return
            alive = (output.detach() != 0).reshape(output.shape[0], -1).any(dim=0)
            dead, total = self.stats.get(name, (0, 0))
            self.stats[name] = (dead + int((~alive).sum()), total + alive.numel())
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def summary(self) -> tuple[float | None, dict[str, float]]:
        total = sum(t for _, t in self.stats.values())
        if not total:
            return None, {}
        dead = sum(d for d, _ in self.stats.values())
        return dead / total, {name: d / t for name, (d, t) in self.stats.items() if t}


def _check_gradients(model: Any, module: Any, batch: Any, params: dict, checks: dict, out: dict) -> None:
    import torch

    module.zero_grad(set_to_none=True)
    output = adapter.forward(module, batch)
    loss, kind = adapter.default_loss(model, output, batch)
    if loss is None:
        y = adapter.first_tensor(output)
        if y is None or not y.requires_grad:
            return
        loss, kind = y.float().pow(2).mean(), "mean_square_output"
    out["loss_kind"] = kind
    if kind != "mean_square_output":
        out["loss"] = loss.item()
    if not loss.requires_grad:
        return
    loss.backward()
    grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    norm = torch.stack(grads).norm().item() if grads else 0.0
    out["grad_norm"] = norm
    finite = norm == norm and norm not in (float("inf"), float("-inf"))
    checks["gradients_finite"] = {"ok": finite, "detail": "" if finite else f"grad norm {norm}"}
    module.zero_grad(set_to_none=True)
    overfit = params.get("overfit")
    if overfit:
        _check_overfit(model, module, batch, overfit, checks, out)


def _check_overfit(model: Any, module: Any, batch: Any, cfg: dict, checks: dict, out: dict) -> None:
    module.train()
    opt = _Adam([p for p in module.parameters() if p.requires_grad], lr=float(cfg["lr"]))
    first = last = None
    steps = 0
    for steps in range(1, int(cfg["steps"]) + 1):
        module.zero_grad(set_to_none=True)
        loss, kind = adapter.default_loss(model, adapter.forward(module, batch), batch)
        if loss is None:
            checks["overfit_one_batch"] = {"ok": None, "detail": "no loss: give the model .targets or .loss()"}
            return
        last = loss.item()
        first = last if first is None else first
        if last < cfg["threshold"] or last != last:
            break
        loss.backward()
        opt.step()
    ok = last is not None and last < cfg["threshold"]
    out["overfit"] = {"initial_loss": first, "final_loss": last, "steps": steps, **cfg}
    detail = f"loss {first:.3g} -> {last:.3g} in {steps} steps" + ("" if ok else f" (threshold {cfg['threshold']})")
    checks["overfit_one_batch"] = {"ok": ok, "detail": detail}


class _Adam:
    """Plain Adam: `torch.optim` imports torch._dynamo on first use (2-3 s per subprocess)."""

    def __init__(self, params: list, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        import torch

        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def step(self) -> None:
        import torch

        self.t += 1
        b1, b2 = self.betas
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                denom = (v / (1 - b2**self.t)).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))


def _check_generate(model: Any, params: dict, checks: dict, out: dict) -> None:
    seed = int(params.get("seed", 0))
    prompts = list(params.get("prompts") or DEFAULT_PROMPTS)
    outputs = [adapter.call_generate(model, p, seed) for p in prompts]
    out["generations"] = [{"prompt": p[:200], "output": o[:200]} for p, o in zip(prompts, outputs)]
    empty = [p for p, o in zip(prompts, outputs) if not o.strip()]
    checks["generate_nonempty"] = {"ok": not empty, "detail": f"empty for {len(empty)} of {len(prompts)} prompts" if empty else ""}
    if len(set(prompts)) > 1:
        same = len(set(outputs)) == 1
        checks["generate_varies"] = {"ok": not same, "detail": "identical output for different prompts" if same else ""}
    echo = all(o.strip() == p.strip() for p, o in zip(prompts, outputs))
    checks["generate_not_echo"] = {"ok": not echo, "detail": "every output repeats its prompt" if echo else ""}
    if params.get("determinism"):
        again = [adapter.call_generate(model, p, seed) for p in prompts]
        same = again == outputs
        checks["deterministic_generate"] = {"ok": same, "detail": "" if same else "same prompt and seed gave different text"}
