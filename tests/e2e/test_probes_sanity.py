"""The sanity probe on real tiny models, in real subprocesses: one good and one broken variant per check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import mlfixtures as mf
from bisector.journal.codec import encode_observation
from bisector.core.errors import UsageError
from bisector.probes.registry import make_probe
from bisector.core.model import Verdict

TORCH_SPEC = {
    "type": "sanity", "model": "src.serve:load", "checkpoint": "model.pt", "expected_shape": [-1, 3],
    "determinism": True, "overfit": {"steps": 200, "lr": 0.05, "threshold": 0.1},
}
# Broken variants: no overfit (a dead or identity model would spend all 200 steps failing it).
QUICK_SPEC = {k: v for k, v in TORCH_SPEC.items() if k != "overfit"}


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("classifiers")
    return {v: mf.classifier_project(root / v, v) for v in ("ok", "nan", "constant", "identity", "noisy")}


def run(spec: dict, workspace: Path, tmp_path: Path, timeout: float = 120):
    probe = make_probe(spec, user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")
    return probe.run(mf.make_ctx(workspace, tmp_path / "logs", timeout=timeout))


def test_good_classifier_passes_every_check_and_reports_its_numbers(classifiers, tmp_path):
    obs = run(TORCH_SPEC, classifiers["ok"], tmp_path)
    assert obs.verdict is Verdict.GOOD, obs.summary
    ev = obs.evidence
    assert set(ev["checks"]) == {
        "checkpoint_loads", "checkpoint_finite", "parameters_finite", "forward_finite", "forward_non_constant",
        "output_shape", "deterministic_forward", "gradients_finite", "overfit_one_batch",
    }
    assert all(c["ok"] for c in ev["checks"].values())
    assert ev["output_shape"] == [8, 3] and ev["n_parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert 0.0 <= ev["dead_fraction"] < 0.5 and set(ev["dead_by_layer"]) == {"act"}
    assert ev["grad_norm"] > 0 and ev["loss_kind"] == "cross_entropy"
    assert ev["overfit"]["final_loss"] < 0.1 < ev["overfit"]["initial_loss"]
    assert obs.log and Path(obs.log).exists()
    json.dumps(encode_observation(obs), allow_nan=False)  # strict JSON for the journal


def test_nan_weight_is_bad_from_checkpoint_to_forward(classifiers, tmp_path):
    obs = run(TORCH_SPEC, classifiers["nan"], tmp_path)
    assert obs.verdict is Verdict.BAD
    failed = obs.evidence["failed"]
    assert failed == ["checkpoint_finite", "parameters_finite", "forward_finite"]
    assert "fc1.weight" in obs.evidence["checks"]["parameters_finite"]["detail"]
    assert "gradients_finite" not in obs.evidence["checks"]  # not repeated once the forward is non-finite
    json.dumps(encode_observation(obs), allow_nan=False)


def test_constant_output_is_bad_and_dead_relus_are_reported(classifiers, tmp_path):
    spec = {**QUICK_SPEC, "max_dead_fraction": 0.5}
    obs = run(spec, classifiers["constant"], tmp_path)
    assert obs.verdict is Verdict.BAD
    assert "forward_non_constant" in obs.evidence["failed"]
    assert obs.evidence["dead_fraction"] == 1.0
    assert obs.evidence["checks"]["dead_activations"]["ok"] is False
    assert "output constant" in obs.summary


def test_output_that_copies_the_input_is_bad(classifiers, tmp_path):
    obs = run(QUICK_SPEC, classifiers["identity"], tmp_path)
    assert obs.verdict is Verdict.BAD
    assert {"output_not_input", "output_shape"} <= set(obs.evidence["failed"])
    assert "got [8, 4], expected [-1, 3]" in obs.evidence["checks"]["output_shape"]["detail"]


def test_nondeterministic_forward_is_bad_when_determinism_is_asked(classifiers, tmp_path):
    obs = run(QUICK_SPEC, classifiers["noisy"], tmp_path)
    assert obs.verdict is Verdict.BAD
    assert obs.evidence["failed"] == ["deterministic_forward"]


@pytest.mark.parametrize(
    "variant, verdict, failed",
    [
        ("ok", Verdict.GOOD, []),
        ("empty", Verdict.BAD, ["generate_nonempty", "generate_varies"]),
        ("constant", Verdict.BAD, ["generate_varies"]),
        ("echo", Verdict.BAD, ["generate_not_echo"]),
        ("noisy", Verdict.BAD, ["deterministic_generate"]),
    ],
)
def test_text_model_generations(variant, verdict, failed, tmp_path):
    ws = mf.text_project(tmp_path / "ws", variant)
    obs = run({"type": "sanity", "model": "src.serve:load", "determinism": True}, ws, tmp_path)
    assert obs.verdict is verdict, obs.summary
    assert obs.evidence["failed"] == failed
    assert len(obs.evidence["generations"]) == 3
    assert "torch" not in obs.evidence  # a text model never needed torch


def test_a_model_that_does_not_load_is_bad_by_default_and_skip_on_request(tmp_path):
    ws = mf.text_project(tmp_path / "ws", "broken")
    obs = run({"type": "sanity", "model": "src.serve:load"}, ws, tmp_path)
    assert obs.verdict is Verdict.BAD
    assert obs.evidence["stage"] == "load"
    assert "ImportError: src.serve is half-written" in obs.summary
    assert "Traceback" in obs.evidence["traceback"]
    obs = run({"type": "sanity", "model": "src.serve:load", "on_error": "skip"}, ws, tmp_path)
    assert obs.verdict is Verdict.SKIP


def test_a_hung_model_times_out_as_skip(tmp_path):
    ws = mf.text_project(tmp_path / "ws", "slow")
    obs = run({"type": "sanity", "model": "src.serve:load", "timeout": 1}, ws, tmp_path)
    assert obs.verdict is Verdict.SKIP
    assert obs.summary == "timed out after 1s" and obs.evidence["timed_out"] is True
    assert obs.duration < 10


def test_unsafe_checkpoint_fails_weights_only_load(tmp_path):
    import argparse

    torch = pytest.importorskip("torch")

    ws = mf.text_project(tmp_path / "ws", "ok")
    torch.save({"w": torch.zeros(2), "args": argparse.Namespace(lr=1)}, ws / "unsafe.pt")
    obs = run({"type": "sanity", "model": "src.serve:load", "checkpoint": "unsafe.pt"}, ws, tmp_path)
    assert obs.verdict is Verdict.BAD
    assert obs.evidence["failed"] == ["checkpoint_loads"]
    assert "unsafe.pt" in obs.evidence["checks"]["checkpoint_loads"]["detail"]


def test_a_model_offering_nothing_to_check_is_skip(tmp_path):
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "__init__.py").write_text("")
    (ws / "src" / "serve.py").write_text("def load(workspace):\n    return object()\n")
    obs = run({"type": "sanity", "model": "src.serve:load"}, ws, tmp_path)
    assert obs.verdict is Verdict.SKIP and "nothing to check" in obs.summary


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "sanity"}, "needs `model"),
        ({"type": "sanity", "model": "src.serve"}, "module:function"),
        ({"type": "sanity", "model": "src.serve:load", "overfit": 3}, "`overfit`"),
        ({"type": "sanity", "model": "src.serve:load", "overfit": {"step": 3}}, "did you mean `steps`"),
        ({"type": "sanity", "model": "src.serve:load", "expected_shape": "8x3"}, "list of integers"),
        ({"type": "sanity", "model": "src.serve:load", "on_error": "ignore"}, "skip, bad, abort"),
    ],
)
def test_bad_config_is_a_one_line_usage_error(spec, message, tmp_path):
    with pytest.raises(UsageError) as err:
        make_probe(spec, user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_documented_adapter_example_passes_sanity(tmp_path):
    """docs/probes.md's complete example (src/model.py + src/serve.py), run as written."""
    import re

    torch = pytest.importorskip("torch")

    doc = (Path(__file__).resolve().parents[2] / "docs" / "probes.md").read_text()
    blocks = {m[1]: m[0] for m in re.findall(r"```python\n(# (src/\w+\.py)\n.*?)```", doc, re.S)}
    assert set(blocks) == {"src/model.py", "src/serve.py"}
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "models").mkdir()
    (ws / "src" / "__init__.py").write_text("")
    ns: dict = {}
    for rel, code in blocks.items():
        (ws / rel).write_text(code)
    exec(blocks["src/model.py"], ns)
    torch.manual_seed(0)
    state = ns["CharLM"](vocab_size=len(ns["VOCAB"])).state_dict()
    # Fresh weights give near-uniform next-character distributions, so the same seed samples the
    # same text for every prompt (and `generate_varies` rightly fails); sharpen them like training would.
    state["head.weight"] *= 30
    torch.save(state, ws / "models" / "model.pt")
    spec = {"type": "sanity", "model": "src.serve:load", "checkpoint": "models/model.pt",
            "expected_shape": [8, 16, len(ns["VOCAB"])], "prompts": ["hello", "the quick brown fox"]}
    obs = run(spec, ws, tmp_path)
    assert obs.verdict is Verdict.GOOD, obs.summary
    assert obs.evidence["loss_kind"] == "model.loss" and obs.evidence["grad_norm"] > 0
    assert {"generate_nonempty", "generate_varies", "forward_non_constant", "output_shape"} <= set(obs.evidence["checks"])
