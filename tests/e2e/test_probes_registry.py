"""The probe registry, plugins through real entry points, frozen adapters, and the suite's order and baselines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures import mlfixtures as mf
from bisector.core.errors import UsageError
from bisector.probes.base import Observation
from bisector.probes.registry import BUILTINS, available, make_probe, make_suite
from bisector.probes.suite import ProbeSuite
from bisector.core.model import Verdict

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, *, extra_path: list[Path] = (), cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in extra_path), str(ROOT)])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd or ROOT, timeout=60)


def test_available_lists_the_builtins_with_one_line_each():
    found = available()
    assert list(found)[: len(BUILTINS)] == list(BUILTINS)
    assert all(desc and "\n" not in desc for desc in found.values())


def test_importing_the_registry_and_probes_imports_neither_torch_nor_numpy():
    res = python(
        "import sys, bisector.probes.registry as r\n"
        "from bisector.probes import sanity, basic, harm, metric, _runner, adapter, stats\n"
        "r.available()\n"
        "print(sorted(m for m in ('torch', 'numpy', 'yaml') if m in sys.modules))"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


PLUGIN = '''\
"""Latency probe: always good, reports the spec's budget."""
from bisector.probes.base import Observation
from bisector.core.model import Verdict


class Latency:
    cost = 1.0

    def __init__(self, spec):
        self.name = spec.get("name", "latency")
        self.budget = spec.get("budget_ms", 100)

    def config(self):
        return {"type": "latency", "budget_ms": self.budget}

    def run(self, ctx):
        return Observation(probe=self.name, verdict=Verdict.GOOD, summary=f"within {self.budget} ms")


def make_latency_probe(spec, *, user_cwd, frozen_dir):
    """Latency probe: p95 latency of the served model under a budget."""
    return Latency(spec)
'''


def test_a_plugin_installed_with_an_entry_point_is_listed_and_built(tmp_path):
    site = tmp_path / "site"
    (site / "latency_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "latency_plugin.py").write_text(PLUGIN)
    (site / "latency_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: latency-plugin\nVersion: 1.0\n")
    (site / "latency_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[bisector.probes]\nlatency = latency_plugin:make_latency_probe\nbroken = no_such_module:factory\n"
        "sanity = latency_plugin:make_latency_probe\n"
    )
    code = textwrap.dedent(f"""\
        import json
        from pathlib import Path
        from bisector.core.errors import UsageError
        from bisector.probes.registry import available, make_probe
        from bisector.probes.base import ProbeContext
        from bisector.journal.codec import encode_observation
        out = {{"available": available()}}
        p = make_probe({{"type": "latency", "budget_ms": 50}}, user_cwd=Path("."), frozen_dir=Path("frozen"))
        ctx = ProbeContext(workspace=Path("."), commit="c", step=0, log_dir=Path({str(tmp_path)!r}))
        out["obs"] = encode_observation(p.run(ctx))
        out["config"] = p.config()
        out["sanity_is_builtin"] = type(make_probe({{"type": "sanity", "model": "a:b"}}, user_cwd=Path("."), frozen_dir=Path("f"))).__name__
        try:
            make_probe({{"type": "broken"}}, user_cwd=Path("."), frozen_dir=Path("frozen"))
        except UsageError as e:
            out["broken"] = str(e)
        print(json.dumps(out))
        """)
    res = python(code, extra_path=[site], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["available"]["latency"] == (
        "Latency probe: p95 latency of the served model under a budget. [plugin: latency_plugin:make_latency_probe]"
    )
    assert "fails to load: ModuleNotFoundError" in out["available"]["broken"]
    assert out["obs"]["verdict"] == "good" and out["obs"]["summary"] == "within 50 ms"
    assert out["config"] == {"type": "latency", "budget_ms": 50}
    assert out["sanity_is_builtin"] == "SanityProbe"  # a plugin never shadows a built-in
    assert out["broken"].startswith("probe plugin 'broken' (no_such_module:factory) fails to import: ModuleNotFoundError")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "nope"}, "unknown probe type 'nope': use one of command, pytest, metric, sanity, basic, harm, manual"),
        ({"run": "true"}, "needs `type = "),
        ({"type": "command", "run": "true", "name": "my probe"}, "without spaces"),
        ({"type": "command", "run": "true", "tiemout": 3}, "did you mean `timeout`"),
        ({"type": "command"}, "needs `run = "),
    ],
)
def test_bad_specs_are_one_line_usage_errors(spec, message, tmp_path):
    with pytest.raises(UsageError) as err:
        make_probe(spec, user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_suite_rejects_duplicate_names_and_empty_specs(tmp_path):
    with pytest.raises(UsageError, match="two probes are named 'command'"):
        make_suite([{"type": "command", "run": "true"}, {"type": "command", "run": "false"}], user_cwd=tmp_path, frozen_dir=tmp_path)
    with pytest.raises(UsageError, match="no probe configured"):
        make_suite([], user_cwd=tmp_path, frozen_dir=tmp_path)


def test_an_adapter_file_outside_the_repo_is_frozen_at_construction(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    adapter_py = outside / "adapter.py"
    adapter_py.write_text(textwrap.dedent("""\
        import json
        from pathlib import Path

        class Model:
            def __init__(self, answers):
                self.answers = answers
            def generate(self, prompt):
                return self.answers.get(prompt, "?")

        def build(workspace):
            return Model(json.loads((Path(workspace) / "model.json").read_text())["answers"])
        """))
    mf.text_cases(tmp_path / "cases.jsonl")
    p = make_probe({"type": "basic", "model": "outside/adapter.py:build", "cases": "cases.jsonl"},
                   user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")
    adapter_py.write_text("def build(workspace):\n    raise RuntimeError('edited later')\n")
    cfg = p.config()["model"]
    assert cfg["kind"] == "file" and cfg["function"] == "build" and len(cfg["sha256"]) == 64
    obs = p.run(mf.make_ctx(mf.text_project(tmp_path / "ws", "ok"), tmp_path / "logs"))
    assert obs.verdict is Verdict.GOOD, obs.summary
    with pytest.raises(UsageError, match="not found: outside/missing.py"):
        make_probe({"type": "basic", "model": "outside/missing.py", "cases": "cases.jsonl"}, user_cwd=tmp_path, frozen_dir=tmp_path)


def test_command_probe_through_the_registry(tmp_path):
    suite = make_suite([{"type": "command", "run": "test -f model.json"}], user_cwd=tmp_path, frozen_dir=tmp_path / "f")
    result = suite.run(mf.make_ctx(mf.text_project(tmp_path / "ws"), tmp_path / "logs"))
    assert result.verdict is Verdict.GOOD


class Fake:
    def __init__(self, name: str, verdict: Verdict, cost: float | None = None, relative: bool = False):
        self.name, self.verdict, self.calls, self.baseline = name, verdict, 0, None
        if cost is not None:
            self.cost = cost
        self.relative = relative

    @property
    def needs_baseline(self) -> bool:
        return self.relative and self.baseline is None

    def set_baseline(self, obs: Observation) -> None:
        self.baseline = obs.counts

    def config(self) -> dict:
        return {"type": "fake", "baseline": self.baseline}

    def run(self, ctx) -> Observation:
        self.calls += 1
        return Observation(probe=self.name, verdict=self.verdict, counts=(1, 10))


def test_suite_runs_cheap_probes_first_and_stops_at_bad(tmp_path):
    slow, cheap, plain = Fake("slow", Verdict.GOOD, 20), Fake("cheap", Verdict.BAD, 0.1), Fake("plain", Verdict.GOOD)
    suite = ProbeSuite([slow, cheap, plain])
    assert [p["name"] for p in suite.config()["probes"]] == ["slow", "cheap", "plain"]  # given order
    assert suite.name == "cheap+plain+slow"
    result = suite.run(mf.make_ctx(tmp_path, tmp_path / "logs"))
    assert result.verdict is Verdict.BAD and [o.probe for o in result.observations] == ["cheap"]
    assert (slow.calls, plain.calls) == (0, 0)
    all_run = ProbeSuite([slow, cheap, plain], stop_early=False, order="given").run(mf.make_ctx(tmp_path, tmp_path / "logs"))
    assert [o.probe for o in all_run.observations] == ["slow", "cheap", "plain"]


def test_suite_hands_the_good_bounds_observations_to_relative_probes(tmp_path):
    rel, fixed = Fake("rel", Verdict.SKIP, relative=True), Fake("fixed", Verdict.GOOD)
    suite = ProbeSuite([rel, fixed])
    assert suite.needs_baseline
    good = suite.run(mf.make_ctx(tmp_path, tmp_path / "logs"))
    before = suite.config()
    assert suite.set_baselines(good.observations) == ["rel"]
    assert not suite.needs_baseline and rel.baseline == (1, 10)
    assert suite.config() != before  # the baseline is part of the memo key
    assert suite.set_baselines(good.observations) == []  # taken once


def test_suite_shows_a_probe_with_a_see_hook_the_steps_earlier_observations(tmp_path):
    class Watcher(Fake):
        seen: list[str] = []

        def see(self, observations):
            self.seen = [o.probe for o in observations]

    first, watcher = Fake("first", Verdict.GOOD, 1), Watcher("watcher", Verdict.GOOD, 1000)
    ProbeSuite([watcher, first]).run(mf.make_ctx(tmp_path, tmp_path / "logs"))
    assert watcher.seen == ["first"]
