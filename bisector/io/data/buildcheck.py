"""After a build: did it modify the step's DVC-tracked inputs? (a cheap fingerprint first,
`dvc status` only when something changed)."""

from __future__ import annotations

import json

from bisector.io.data.dvccli import run_dvc
from bisector.io.data.workspace import DvcWorkspace


def input_stats(ws: DvcWorkspace) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime_ns) of every file of the step's data inputs: a cheap fingerprint."""
    out: dict[str, tuple[int, int, int]] = {}
    for rel in ws.inputs():
        root = ws.path / rel
        paths = [root] if not root.is_dir() else [p for p in root.rglob("*") if p.is_file()]
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            out[str(p.relative_to(ws.path))] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def after_build_check(ws: DvcWorkspace, before: dict[str, tuple[int, int, int]] | None = None) -> list[str]:
    """The data inputs the build modified (`dvc status` on the data-source `.dvc` files); [] when clean.

    A non-empty answer means the build wrote its inputs: the session should warn and mark
    the step suspect (with hardlink/symlink link types, the user's cache may be damaged).
    With `before` (`input_stats` taken after the checkout), an unchanged fingerprint answers
    [] without starting DVC (about 0.7 s saved per step); any change is confirmed by `dvc status`.
    """
    targets = ws.data_source_files() if isinstance(ws, DvcWorkspace) and ws.step_info.get("dvc") else []
    if not targets:
        return []
    if before is not None and input_stats(ws) == before:
        return []
    res = run_dvc(ws.path, "status", "--json", *targets, env=ws.env(), timeout=ws.timeout)
    try:
        status = json.loads(res.stdout.strip() or "{}")
    except ValueError:
        return targets  # DVC could not tell: report every input as suspect rather than none
    changed: set[str] = set()
    for target, items in status.items():
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                for outs in item.values():
                    if isinstance(outs, dict):
                        changed.update(outs)
            elif isinstance(item, str):
                changed.add(target)
    return sorted(changed)
