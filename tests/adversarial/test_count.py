"""The adversarial tier holds at least 150 cases (acceptance 1 of issue 12): counted by collecting it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TIER = Path(__file__).parent


def test_the_tier_has_at_least_150_cases() -> None:
    res = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(TIER)],
                         capture_output=True, text=True, cwd=TIER.parent.parent, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    cases = [line for line in res.stdout.splitlines() if "::" in line]
    assert len(cases) >= 150, f"{len(cases)} cases collected"
    assert any("test_count.py" in c for c in cases)  # the count includes itself: the whole folder was read
