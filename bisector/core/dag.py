"""The candidate DAG of the search, in memory linear in the commits (plus one bit per pair of chains).

Candidates are indexed in a topological order (oldest first). A *chain* is a maximal run of
commits where each one is the only child of the previous one and has it as its only parent;
edges between chains always run from the last commit of one chain to the first of another. So
the ancestors of a commit are the commits before it in its own chain plus every commit of the
chains that are ancestors of its chain: reachability is kept between chains only (a packed bit
matrix, chains x chains), and closure sums over ancestors or descendants are one prefix sum
plus one chain-level matrix product. A linear history is one chain; a history with a merge every
~10 commits has about a third as many chains as commits.

Standard library and numpy only.
"""

from __future__ import annotations

import heapq
from typing import Mapping

import numpy as np

from bisector.core.errors import UsageError

_BLOCK = 1 << 21  # unpacked bits per block of the chain matrix (bounds temporary memory)


class Dag:
    """Candidates in a topological order (oldest first), their chains, and closure sums."""

    def __init__(self, parents: Mapping[str, tuple[str, ...]]):
        newest_first = list(parents)
        n = self.n = len(newest_first)
        pos = {r: d for d, r in enumerate(newest_first)}  # rev-list position (newest first)
        child_d: list[int] = []
        parent_d: list[int] = []
        for d, r in enumerate(newest_first):
            ps = parents[r]
            if len(ps) == 1:
                p = pos.get(ps[0])
                if p is not None:
                    child_d.append(d)
                    parent_d.append(p)
                continue
            for p in dict.fromkeys(ps):
                q = pos.get(p)
                if q is not None:
                    child_d.append(d)
                    parent_d.append(q)
        cd = np.asarray(child_d, dtype=np.int64)
        pd = np.asarray(parent_d, dtype=np.int64)
        # git's list order: rev-list order reversed (oldest first); used for tie-breaking.
        if np.any(pd < cd):  # a parent listed before its child: sort topologically
            order_d = self._kahn(n, cd, pd)
            index_of_d = np.empty(n, dtype=np.int64)
            index_of_d[order_d] = np.arange(n)
            self.gitpos = (n - 1 - order_d).astype(np.int64)
            self.revs: list[str] = [newest_first[d] for d in order_d]
        else:
            index_of_d = n - 1 - np.arange(n, dtype=np.int64)
            self.gitpos = np.arange(n, dtype=np.int64)
            self.revs = newest_first[::-1]
        del pos
        self.index: dict[str, int] = {r: i for i, r in enumerate(self.revs)}
        child = index_of_d[cd]
        parent = index_of_d[pd]
        # Parents of each candidate as CSR arrays (in the order the input listed them).
        by_child = np.argsort(child, kind="stable")
        self._par = parent[by_child].astype(np.int32)
        self._par_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(child, minlength=n), out=self._par_ptr[1:])
        indeg = np.diff(self._par_ptr)
        outdeg = np.bincount(parent, minlength=n)
        self._build_chains(indeg, outdeg)

    @staticmethod
    def _kahn(n: int, cd: np.ndarray, pd: np.ndarray) -> np.ndarray:
        """Topological order (as rev-list positions), the oldest in git's list order first."""
        pending = np.bincount(cd, minlength=n).tolist()
        kids: list[list[int]] = [[] for _ in range(n)]
        for c, p in zip(cd.tolist(), pd.tolist()):
            kids[p].append(c)
        heap = [-d for d in range(n) if pending[d] == 0]  # gitpos = n-1-d: smallest gitpos first
        heapq.heapify(heap)
        out = []
        while heap:
            d = -heapq.heappop(heap)
            out.append(d)
            for k in kids[d]:
                pending[k] -= 1
                if pending[k] == 0:
                    heapq.heappush(heap, -k)
        if len(out) != n:
            raise UsageError("the candidate graph has a cycle: pass parents from `git rev-list --parents`")
        return np.asarray(out, dtype=np.int64)

    def _build_chains(self, indeg: np.ndarray, outdeg: np.ndarray) -> None:
        n = self.n
        first_parent = np.zeros(n, dtype=np.int64)
        has = indeg > 0
        first_parent[has] = self._par[self._par_ptr[:-1][has]]
        cont = (indeg == 1) & (outdeg[first_parent] == 1)
        # Pointer jumping: the head of each node's chain and its position in it.
        nxt = np.where(cont, first_parent, np.arange(n))
        dist = cont.astype(np.int64)
        while True:
            jump = nxt[nxt]
            if np.array_equal(jump, nxt):
                break
            dist = dist + dist[nxt]
            nxt = jump
        heads = np.flatnonzero(~cont)  # ascending: a parent chain's head precedes its children's
        self.n_chains = c_n = len(heads)
        cid = np.empty(n, dtype=np.int64)
        cid[heads] = np.arange(c_n)
        self.chain = cid[nxt]
        self.chain_pos = dist
        self._perm = np.lexsort((dist, self.chain))  # chain-contiguous order
        lengths = np.bincount(self.chain, minlength=c_n)
        self._start = np.zeros(c_n + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._start[1:])
        self._chain_p = self.chain[self._perm]
        # Strict ancestor chains of each chain, as packed bit rows (parents' rows OR'ed in).
        self._width = (c_n + 7) // 8
        m = np.zeros((c_n, self._width), dtype=np.uint8)
        for c, h in enumerate(heads.tolist()):
            for p in self._par[self._par_ptr[h] : self._par_ptr[h + 1]].tolist():
                d = int(self.chain[p])
                m[c] |= m[d]
                m[c, d >> 3] |= np.uint8(0x80 >> (d & 7))
        self._m = m

    # ------------------------------------------------------------- structure
    def parents_of(self, i: int) -> tuple[int, ...]:
        return tuple(self._par[self._par_ptr[i] : self._par_ptr[i + 1]].tolist())

    def n_parents_in(self, i: int, mask: np.ndarray) -> int:
        """How many parents of candidate i the boolean mask holds."""
        return int(mask[self._par[self._par_ptr[i] : self._par_ptr[i + 1]]].sum())

    def _row(self, c: int) -> np.ndarray:
        return np.unpackbits(self._m[c], count=self.n_chains).astype(bool)

    def anc_mask(self, i: int) -> np.ndarray:
        """Boolean mask of the ancestors-or-self of candidate i."""
        c = int(self.chain[i])
        mask = self._row(c)[self.chain]
        mask |= (self.chain == c) & (self.chain_pos <= self.chain_pos[i])
        return mask

    def is_ancestor(self, a: int, b: int) -> bool:
        """Whether candidate a is an ancestor-or-self of candidate b."""
        ca, cb = int(self.chain[a]), int(self.chain[b])
        if ca == cb:
            return bool(self.chain_pos[a] <= self.chain_pos[b])
        return bool(self._m[cb, ca >> 3] & (0x80 >> (ca & 7)))

    # ----------------------------------------------------------- closure sums
    def _chain_totals(self, vp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cs = np.concatenate(([0], np.cumsum(vp)))
        return cs, cs[self._start[1:]] - cs[self._start[:-1]]

    def _blocks(self, rows: np.ndarray):
        step = max(1, _BLOCK // max(1, self.n_chains))
        for j in range(0, len(rows), step):
            sel = rows[j : j + step]
            yield sel, np.unpackbits(self._m[sel], axis=1, count=self.n_chains)

    def anc_sums(self, v: np.ndarray) -> np.ndarray:
        """out[i] = sum of v over the ancestors-or-self of i."""
        vp = np.asarray(v)[self._perm]
        cs, tot = self._chain_totals(vp)
        out_p = cs[1:] - cs[self._start[self._chain_p]]
        if self.n_chains > 1:
            cols = np.flatnonzero(tot)
            above = np.zeros(self.n_chains, dtype=tot.dtype)
            if len(cols):
                for sel, bits in self._blocks(np.arange(self.n_chains)):
                    above[sel] = bits[:, cols] @ tot[cols]
            out_p = out_p + above[self._chain_p]
        out = np.empty_like(out_p)
        out[self._perm] = out_p
        return out

    def desc_sums(self, v: np.ndarray) -> np.ndarray:
        """out[i] = sum of v over the descendants-or-self of i."""
        vp = np.asarray(v)[self._perm]
        cs, tot = self._chain_totals(vp)
        out_p = cs[self._start[self._chain_p + 1]] - cs[:-1]
        if self.n_chains > 1:
            below = np.zeros(self.n_chains, dtype=tot.dtype)
            rows = np.flatnonzero(tot)
            for sel, bits in self._blocks(rows):
                below += tot[sel] @ bits
            out_p = out_p + below[self._chain_p]
        out = np.empty_like(out_p)
        out[self._perm] = out_p
        return out
