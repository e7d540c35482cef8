"""Pins as the bounds of a run: `@NAME` revisions replaced by the pins' shas, the records a run
needs to trust a verified pin (`run.flags.pinned_bounds`), and with a bad revision but no good
one (and nothing to resume), the most recent pin before the bad revision as the good bound.
One place for `bisector run` and `bisector.bisect`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bisector.core.errors import UsageError
from bisector.io.git import resolve
from bisector.journal.read import find_unfinished
from bisector.review.pins.store import Pin, expand_rev, latest_ancestor_pin, load_pins


@dataclass
class PinnedBounds:
    goods: list[str]
    bad: str | None
    code_rev: str | None = None
    data_rev: str | None = None
    pinned_goods: dict[str, dict[str, str]] = field(default_factory=dict)  # good sha -> its pin's record
    chosen: Pin | None = None  # the pin taken as the good bound when none was given


def pin_record(pin: Pin) -> dict[str, str]:
    """What a run needs of a pin given as its good bound, to trust it or say why it does not."""
    return {"name": pin.name, "created": pin.created, "verdict": pin.verdict or "",
            "probe_digest": pin.probe_digest, "data_rev": pin.data_rev or ""}


def expand_bounds(root: Path, goods: Sequence[str], bad: str | None, code_rev: str | None = None,
                  data_rev: str | None = None) -> PinnedBounds:
    named = {f"@{p.name}": p for p in load_pins(root).values()} if any(g.startswith("@") for g in goods) else {}
    out = PinnedBounds(
        goods=[expand_rev(root, g) for g in goods],
        bad=expand_rev(root, bad) if bad else bad,
        code_rev=expand_rev(root, code_rev) if code_rev else code_rev,
        data_rev=expand_rev(root, data_rev) if data_rev else data_rev,
        pinned_goods={p.commit: pin_record(p) for g in goods if (p := named.get(g))},
    )
    if out.bad is None or out.goods or find_unfinished(root) is not None:
        return out
    pin = latest_ancestor_pin(root, resolve(root, out.bad, "bad revision"))
    if pin is None:
        raise UsageError("no good revision: pass --good REV (a commit where the probe passes), or pin one "
                         "with `bisector pin NAME --rev REV`")
    out.goods, out.pinned_goods, out.chosen = [pin.commit], {pin.commit: pin_record(pin)}, pin
    return out
