"""The subprocess protocol of model probes: isolation, logs, environment, seeding, crashes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.fixtures import mlfixtures as mf
from bisector.probes.registry import make_probe
from bisector.core.model import Verdict


def workspace(tmp_path: Path, serve: str) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "__init__.py").write_text("")
    (ws / "src" / "serve.py").write_text(textwrap.dedent(serve))
    return ws


def sanity(tmp_path: Path, ws: Path, **spec):
    p = make_probe({"type": "sanity", "model": "src.serve:load", **spec}, user_cwd=tmp_path, frozen_dir=tmp_path / "f")
    return p.run(mf.make_ctx(ws, tmp_path / "logs"))


def test_user_output_goes_to_the_log_and_the_step_reaches_the_adapter(tmp_path):
    ws = workspace(tmp_path, """\
        import os, sys
        from pathlib import Path

        class M:
            def generate(self, prompt):
                print("generating for", prompt)
                return prompt[::-1] + "!"

        def load(workspace):
            print("loading", os.environ["BISECTOR_COMMIT"], "step", os.environ["BISECTOR_STEP"])
            assert Path(os.getcwd()) == Path(workspace) and sys.path[0] == str(workspace)
            return M()
        """)
    obs = sanity(tmp_path, ws)
    assert obs.verdict is Verdict.GOOD, obs.summary
    log = Path(obs.log).read_text()
    assert f"loading {'0' * 40} step 1" in log and "generating for Hello" in log
    result = json.loads((tmp_path / "logs" / "probe-sanity.result.json").read_text())
    assert result["ok"] is True and "loading" not in json.dumps(result)


def test_a_child_that_dies_before_reporting_is_on_error(tmp_path):
    ws = workspace(tmp_path, """\
        import os

        def load(workspace):
            os._exit(3)
        """)
    obs = sanity(tmp_path, ws, on_error="skip")
    assert obs.verdict is Verdict.SKIP
    assert obs.summary.startswith("probe subprocess died before reporting (exit 3)")
    assert obs.evidence["returncode"] == 3


def test_a_stale_result_is_never_read_as_this_runs(tmp_path):
    ws = workspace(tmp_path, """\
        import os

        def load(workspace):
            os._exit(4)
        """)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "probe-sanity.result.json").write_text('{"ok": true, "data": {"checks": {}}}')
    assert sanity(tmp_path, ws).verdict is Verdict.BAD  # on_error of sanity: the model does not load


def test_generate_without_seed_parameter_is_seeded_through_the_global_rng(tmp_path):
    ws = workspace(tmp_path, """\
        import random

        class M:
            def generate(self, prompt):
                return prompt + " " + str(random.random())

        def load(workspace):
            return M()
        """)
    (tmp_path / "prompts.txt").write_text("a\nb\n")
    p = make_probe({"type": "harm", "model": "src.serve:load", "prompts": "prompts.txt", "samples": 3, "max_rate": 0.1},
                   user_cwd=tmp_path, frozen_dir=tmp_path / "f")
    runs = [p.run(mf.make_ctx(ws, tmp_path / f"logs{i}")) for i in range(2)]
    outputs = [json.loads((tmp_path / f"logs{i}" / "probe-harm.result.json").read_text())["data"]["records"] for i in range(2)]
    assert outputs[0] == outputs[1]
    assert len({r["output"] for r in outputs[0]}) == 6  # seeds differ per sample, texts differ per prompt
    assert all(o.verdict is Verdict.GOOD for o in runs)


def test_a_workspace_module_named_like_a_bisector_module_does_not_shadow_it(tmp_path):
    ws = workspace(tmp_path, """\
        class M:
            def generate(self, prompt):
                return "answer to " + prompt

        def load(workspace):
            return M()
        """)
    (ws / "bisector").mkdir()
    (ws / "bisector" / "__init__.py").write_text("raise ImportError('the project has its own bisector package')\n")
    assert sanity(tmp_path, ws).verdict is Verdict.GOOD
