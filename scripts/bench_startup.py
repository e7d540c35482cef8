"""Start-up time of `bisector --help` (and which heavy modules it imports).

Usage: python scripts/bench_startup.py [RUNS]   (or --help)
Runs the installed `bisector` entry point RUNS times (default 30) after 3 warm-ups and
prints the median and quartiles of the wall time, next to `python -c pass` as a floor.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int) -> list[float]:
    for _ in range(3):
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="?", type=int, default=30, help="timed runs of each command (default 30)")
    runs = ap.parse_args().runs
    exe = shutil.which("bisector") or sys.exit("bisector is not installed (pip install -e .)")
    rows = [("python -c pass", [sys.executable, "-c", "pass"]), ("bisector --help", [exe, "--help"])]
    print(f"{'command':<20} {'median s':>9} {'q1 s':>7} {'q3 s':>7}  (n={runs})")
    for name, cmd in rows:
        t = sorted(timed(cmd, runs))
        q = statistics.quantiles(t, n=4)
        print(f"{name:<20} {statistics.median(t):9.3f} {q[0]:7.3f} {q[2]:7.3f}")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from bisector.cli.main import main\n"
         "try:\n main(['--help'])\nexcept SystemExit: pass\n"
         "print(sorted(m for m in ('dvc','torch','numpy','git','rich','yaml','tomlkit','psutil') if m in sys.modules))"],
        capture_output=True, text=True,
    )
    print("heavy modules imported by --help:", probe.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
