"""The manual probe: a person looks at the step's workspace and answers good, bad, skip or undo.

On a terminal the question is a `click.prompt`; otherwise one answer is read per line of stdin
(or of the `input` stream given), so a script or a test can drive it. End of input aborts the
search (the journal keeps every answer given so far).

`undo` answers with a SKIP observation whose evidence holds `{"undo": true}` (see `is_undo`):
the session must not record it as a skip, but drop the previous step's answer and ask again.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO, Any, Mapping, Sequence

import click

from bisector.core.errors import UsageError
from bisector.probes.base import Observation, ProbeContext
from bisector.core.model import Verdict

DESCRIPTION = "asks you: good, bad, skip or undo, after showing the workspace and the other probes' evidence"
UNDO_KEY = "undo"
ANSWERS = {"g": "good", "good": "good", "b": "bad", "bad": "bad", "s": "skip", "skip": "skip",
           "u": "undo", "undo": "undo"}
_KEYS = ("type", "name", "log_lines")
# One question at a time, whatever the number of local workers (-j): they share one terminal.
_ASKING = threading.Lock()


def is_undo(observation: Observation | Mapping[str, Any]) -> bool:
    """True for the observation of an `undo` answer (an Observation or its journal JSON)."""
    ev = observation.evidence if isinstance(observation, Observation) else observation.get("evidence", {})
    return bool((ev or {}).get(UNDO_KEY))


class ManualProbe:
    """Asks a person. `cost` is high so that it runs after the automatic probes of the step."""

    cost = 1000.0

    def __init__(self, spec: Mapping[str, Any] | None = None, *, user_cwd: Path | None = None,
                 frozen_dir: Path | None = None, input: IO[str] | None = None, output: IO[str] | None = None):
        spec = dict(spec or {})
        unknown = set(spec) - set(_KEYS)
        if unknown:
            raise UsageError(f"manual probe: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(_KEYS)})")
        self.name = str(spec.get("name", "manual"))
        self.log_lines = int(spec.get("log_lines", 5))
        self._input = input
        self._output = output
        self._previous: list[Observation] = []

    def config(self) -> dict[str, Any]:
        return {"type": "manual", "log_lines": self.log_lines}

    def see(self, observations: Sequence[Observation]) -> None:
        """Hook for the suite: the observations of this step's earlier probes (shown to the person)."""
        self._previous = list(observations)

    # ------------------------------------------------------------------ io
    def _say(self, text: str) -> None:
        click.echo(text, file=self._output or sys.stderr)

    def _interactive(self) -> bool:
        return self._input is None and sys.stdin.isatty()

    def _read(self) -> str | None:
        """One valid answer, or None at end of input."""
        choices = "good/bad/skip/undo"
        if self._interactive():
            try:
                raw = click.prompt(f"Is this revision good or bad? [{choices}]", err=True,
                                   type=click.Choice(sorted(ANSWERS), case_sensitive=False), show_choices=False)
            except click.Abort:
                return None
            return ANSWERS[raw.lower()]
        stream = self._input or sys.stdin
        self._say(f"Is this revision good or bad? [{choices}]")
        while True:
            line = stream.readline()
            if not line:
                return None
            answer = ANSWERS.get(line.strip().lower())
            if answer:
                return answer
            if line.strip():
                self._say(f"  not an answer: {line.strip()!r}; answer one of {choices}")

    def _show(self, ctx: ProbeContext) -> None:
        self._say(f"\n== step {ctx.step}: revision {ctx.commit}" + (f" (data {ctx.data_rev})" if ctx.data_rev else ""))
        self._say(f"   workspace: {ctx.workspace}")
        seen = {o.probe for o in self._previous}
        for o in self._previous:
            self._say(f"   probe {o.probe}: {o.verdict.value}: {o.summary}")
        # Without the suite hook, the earlier probes' logs of this step are the evidence at hand.
        for log in sorted(Path(ctx.log_dir).glob("probe-*.log")):
            probe = log.stem.removeprefix("probe-")
            if probe in seen or probe == self.name:
                continue
            tail = log.read_text(errors="replace").splitlines()[-self.log_lines:]
            self._say(f"   probe {probe} log ({log}):")
            for line in tail:
                self._say(f"     | {line}")

    def run(self, ctx: ProbeContext) -> Observation:
        with _ASKING:
            self._show(ctx)
            answer = self._read()
        self._previous = []
        if answer is None:
            return Observation(self.name, Verdict.ABORT, "no answer (end of input): the search stops",
                               evidence={"answer": None})
        if answer == "undo":
            return Observation(self.name, Verdict.SKIP, "undo: take back the previous answer",
                               evidence={"answer": "undo", UNDO_KEY: True})
        return Observation(self.name, Verdict(answer), f"answered {answer}", evidence={"answer": answer})
