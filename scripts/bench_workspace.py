"""Workspace cost: `Workspace.open` (a private clone) and one step's checkout, against the linked
worktree it replaced (`git worktree add` / `git -C wt checkout` + `clean`), on generated linear
histories (tests/fixtures/gitgen.py) of 1k and 100k commits with 2,000 tags.

    python scripts/bench_workspace.py [--sizes 1000 100000] [--repeat 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bisector.io.workspace import Workspace
from tests.fixtures import gitgen


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 100000])
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    try:
        for n in args.sizes:
            r = gitgen.build("linear", n, [n // 2], path=root / f"r{n}")
            tags = "".join(f"create refs/tags/v{i} {r.shas[(i * 37) % n]}\n" for i in range(2000))
            subprocess.run(["git", "-C", str(r.path), "update-ref", "--stdin"], input=tags, text=True, check=True)
            subprocess.run(["git", "-C", str(r.path), "pack-refs", "--all"], check=True)
            git = lambda *a: subprocess.run(["git", "-C", str(r.path), *a], check=True, capture_output=True)  # noqa: E731
            wt = root / "old" / "wt"

            def old_open() -> None:
                git("worktree", "add", "--detach", "--force", str(wt), r.shas[-1])
                git("worktree", "remove", "--force", str(wt))

            ws = Workspace(r.path, root / "new")

            def new_open() -> None:
                ws.open(r.shas[-1])
                ws.close()

            old = median_ms(old_open, args.repeat)
            new = median_ms(new_open, args.repeat)
            # One step: check out another commit and clean (what Workspace.checkout does per step).
            git("worktree", "add", "--detach", "--force", str(wt), r.shas[-1])
            revs = [r.shas[-1], r.shas[n // 2]]
            i = [0]

            def old_step() -> None:
                i[0] ^= 1
                subprocess.run(["git", "-C", str(wt), "checkout", "--quiet", "--force", "--detach", revs[i[0]]], check=True)
                subprocess.run(["git", "-C", str(wt), "clean", "-ffdxq"], check=True)

            ws.open(r.shas[-1])
            j = [0]

            def new_step() -> None:
                j[0] ^= 1
                ws.checkout(revs[j[0]])

            old_s, new_s = median_ms(old_step, args.repeat), median_ms(new_step, args.repeat)
            ws.close()
            git("worktree", "remove", "--force", str(wt))
            print(f"{n:>7} commits: open {old:6.1f} ms (worktree add+remove) -> {new:6.1f} ms (clone+checkout+close); "
                  f"step checkout {old_s:5.1f} ms -> {new_s:5.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
