"""The candidate DAG of the search: a topological order, ancestor bitsets, fast closure sums.

Pure standard library (like `search.py`, which is its only user). Bitsets are Python ints:
bit i stands for the i-th candidate in topological order (oldest first).
"""

from __future__ import annotations

import heapq
from itertools import accumulate
from typing import Mapping

from bisector.core.errors import UsageError


def _bits(x: int) -> list[int]:
    out = []
    while x:
        low = x & -x
        out.append(low.bit_length() - 1)
        x ^= low
    return out


class Dag:
    """Candidates in a topological order (oldest first) with ancestor bitsets and fast closure sums."""

    def __init__(self, parents: Mapping[str, tuple[str, ...]]):
        newest_first = list(parents)
        n = len(newest_first)
        dict_pos = {r: d for d, r in enumerate(newest_first)}
        # git's list order: rev-list order reversed (oldest first); used for tie-breaking.
        gitpos_of = {r: n - 1 - d for r, d in dict_pos.items()}
        in_set = {r: tuple(dict.fromkeys(p for p in parents[r] if p in dict_pos)) for r in newest_first}
        order = newest_first[::-1]
        if any(dict_pos[p] < dict_pos[r] for r in order for p in in_set[r]):
            order = self._kahn(in_set, gitpos_of)
        self.revs: list[str] = order
        self.index = {r: i for i, r in enumerate(order)}
        self.gitpos = [gitpos_of[r] for r in order]
        self.parents = [tuple(self.index[p] for p in in_set[r]) for r in order]
        self.children: list[list[int]] = [[] for _ in range(n)]
        for i, ps in enumerate(self.parents):
            for p in ps:
                self.children[p].append(i)
        anc = [0] * n
        for i, ps in enumerate(self.parents):
            a = 1 << i
            for p in ps:
                a |= anc[p]
            anc[i] = a
        self.anc = anc
        self.all = (1 << n) - 1
        # Segments for closure sums: inside a segment each node's only parent (child) is its neighbour,
        # so its ancestor (descendant) sum is a running sum; only merges (forks) sum explicit lists.
        self._anc_segs = self._segments(self.parents, anc, forward=True)
        self._desc_segs: list | None = None

    @staticmethod
    def _kahn(in_set: Mapping[str, tuple[str, ...]], gitpos: Mapping[str, int]) -> list[str]:
        pending = {r: len(ps) for r, ps in in_set.items()}
        kids: dict[str, list[str]] = {r: [] for r in in_set}
        for r, ps in in_set.items():
            for p in ps:
                kids[p].append(r)
        heap = [(gitpos[r], r) for r, c in pending.items() if c == 0]
        heapq.heapify(heap)
        out = []
        while heap:
            _, r = heapq.heappop(heap)
            out.append(r)
            for k in kids[r]:
                pending[k] -= 1
                if pending[k] == 0:
                    heapq.heappush(heap, (gitpos[k], k))
        if len(out) != len(in_set):
            raise UsageError("the candidate graph has a cycle: pass parents from `git rev-list --parents`")
        return out

    def _segments(self, links: list, sets: list[int], forward: bool) -> list:
        n = len(links)
        segs = []
        idx = range(n) if forward else range(n - 1, -1, -1)
        step = -1 if forward else 1
        start = None
        for i in idx:
            chained = links[i] == [i + step] or links[i] == (i + step,)
            if not chained:
                if start is not None:
                    segs.append(start)
                ls = links[i]
                if len(ls) > 1:
                    # A merge (fork) sums its largest parent's (child's) closure plus what that misses.
                    base = max(ls, key=lambda p: sets[p].bit_count())
                    head = (i, 2, (base, _bits(sets[i] & ~sets[base])))
                else:
                    head = (i, 0, None) if not ls else (i, 1, ls[0])
                start = [head, 1]
            else:
                start[1] += 1
        if start is not None:
            segs.append(start)
        return [(h, ln) for h, ln in segs]

    def anc_sums(self, v: list[float]) -> list[float]:
        return self._sums(v, self._anc_segs, forward=True)

    def desc_sums(self, v: list) -> list:
        if self._desc_segs is None:
            n = len(self.revs)
            desc = [0] * n
            for i in range(n - 1, -1, -1):
                d = 1 << i
                for c in self.children[i]:
                    d |= desc[c]
                desc[i] = d
            self._desc_segs = self._segments(self.children, desc, forward=False)
        return self._sums(v, self._desc_segs, forward=False)

    @staticmethod
    def _sums(v: list, segs: list, forward: bool) -> list:
        out = [0] * len(v)
        for (i, kind, ref), ln in segs:
            if kind == 0:
                s = v[i]
            elif kind == 1:
                s = out[ref] + v[i]
            else:
                s = out[ref[0]] + sum(map(v.__getitem__, ref[1]))
            if ln == 1:
                out[i] = s
            elif forward:
                out[i : i + ln] = accumulate(v[i + 1 : i + ln], initial=s)
            else:
                out[i - ln + 1 : i + 1] = list(accumulate(v[i - ln + 1 : i][::-1], initial=s))[::-1]
        return out
