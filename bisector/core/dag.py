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
from collections.abc import Collection, Iterator, Mapping, Sequence

from bisector.core.arrays import np
from bisector.core.errors import UsageError

_BLOCK = 1 << 21  # unpacked bits per block of the chain matrix (bounds temporary memory)


class Revisions(Mapping[str, tuple[str, ...]]):
    """Candidates -> their parents among the candidates, newest first (as `git rev-list`), in
    arrays: the names as one fixed-width bytes array, the parents as CSR positions. About 60
    bytes a commit, where a dict of strings and tuples takes about 250; a name is found by a
    binary search over the sorted names. Parents outside the candidates are not kept."""

    def __init__(self, keys: np.ndarray, ptr: np.ndarray, par: np.ndarray, order: np.ndarray | None = None):
        self.keys = keys  # dtype S<width>, position d = rev-list order
        self.ptr = np.asarray(ptr, dtype=np.int64)  # parents of d: par[ptr[d]:ptr[d + 1]]
        self.par = np.asarray(par, dtype=np.int64)
        self._order = np.argsort(keys, kind="stable") if order is None else order  # names sorted
        if len(self.par) > len(keys):  # a commit listed twice among one's parents (pathspec rewrites)
            self._dedupe()

    @classmethod
    def from_mapping(cls, parents: Mapping[str, Sequence[str]]) -> "Revisions":
        if isinstance(parents, Revisions):
            return parents
        names = list(parents)
        keys = np.array([k.encode() for k in names], dtype=bytes)
        counts = np.fromiter((len(parents[k]) for k in names), dtype=np.int64, count=len(names))
        flat = [p.encode() for k in names for p in parents[k]]
        empty = cls(keys, np.zeros(len(names) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64))
        found = empty.find_many(np.array(flat, dtype=bytes)) if flat else np.zeros(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(names)), counts)
        keep = found >= 0
        ptr = np.zeros(len(names) + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows[keep], minlength=len(names)), out=ptr[1:])
        return cls(keys, ptr, found[keep])

    def _dedupe(self) -> None:
        counts = np.diff(self.ptr)
        rows = []
        for d in np.flatnonzero(counts > 1).tolist():
            ps = self.par[self.ptr[d] : self.ptr[d + 1]].tolist()
            rows.append((d, list(dict.fromkeys(ps))))
        if all(len(u) == counts[d] for d, u in rows):
            return
        new = {d: u for d, u in rows}
        par, ptr = [], [0]
        for d in range(len(self.keys)):
            par.extend(new.get(d) or self.par[self.ptr[d] : self.ptr[d + 1]].tolist())
            ptr.append(len(par))
        self.par, self.ptr = np.asarray(par, dtype=np.int64), np.asarray(ptr, dtype=np.int64)

    # ------------------------------------------------------------- lookup
    def find_many(self, names: np.ndarray) -> np.ndarray:
        """Positions of the names (a bytes array), -1 where not a candidate."""
        n = len(self.keys)
        if n == 0 or len(names) == 0:
            return np.full(len(names), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self.keys, names, sorter=self._order), n - 1)
        cand = self._order[at]
        return np.where(self.keys[cand] == names, cand, -1)

    def find(self, key: str) -> int | None:
        d = int(self.find_many(np.array([key.encode()], dtype=bytes))[0])
        return None if d < 0 else d

    def name(self, d: int) -> str:
        return bytes(self.keys[d]).decode()

    def largest(self, ds: np.ndarray, m: int) -> list[int]:
        """The m positions among `ds` with the largest names, largest first: a partition on
        the first 8 bytes, then an exact sort of the few that reach the cut."""
        if len(ds) > 4 * m:
            width = self.keys.dtype.itemsize
            raw = self.keys[ds].view(np.uint8).reshape(len(ds), width)[:, :8]
            if width < 8:
                raw = np.pad(raw, ((0, 0), (0, 8 - width)))
            pref = np.ascontiguousarray(raw).view(">u8").reshape(-1)
            cut = np.partition(pref, len(pref) - m)[len(pref) - m]
            ds = ds[pref >= cut]
        return sorted(ds.tolist(), key=lambda d: bytes(self.keys[d]), reverse=True)[:m]

    def parent_positions(self, d: int) -> list[int]:
        return self.par[self.ptr[d] : self.ptr[d + 1]].tolist()

    # ------------------------------------------------------------ Mapping
    def __getitem__(self, key: str) -> tuple[str, ...]:
        d = self.find(key) if isinstance(key, str) else None
        if d is None:
            raise KeyError(key)
        return tuple(self.name(p) for p in self.parent_positions(d))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.find(key) is not None

    def __iter__(self) -> Iterator[str]:
        for lo in range(0, len(self.keys), 4096):
            for k in self.keys[lo : lo + 4096].tolist():
                yield k.decode()

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"Revisions({len(self)} candidates)"


class _Index:
    """Candidate name -> its index in the DAG's topological order (a dict's get/[]/in)."""

    def __init__(self, graph: Revisions, index_of_d: np.ndarray):
        self._graph, self._index_of_d = graph, index_of_d

    def get(self, key: str, default: int | None = None) -> int | None:
        d = self._graph.find(key) if isinstance(key, str) else None
        return default if d is None else int(self._index_of_d[d])

    def __getitem__(self, key: str) -> int:
        i = self.get(key)
        if i is None:
            raise KeyError(key)
        return i

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._graph.find(key) is not None

    def __len__(self) -> int:
        return len(self._index_of_d)


class _Names(Sequence[str]):
    """Index in the topological order -> candidate name (a list's [] and iteration)."""

    def __init__(self, graph: Revisions, order_d: np.ndarray):
        self._graph, self._order_d = graph, order_d

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self._graph.name(int(d)) for d in self._order_d[i]]
        return self._graph.name(int(self._order_d[i]))

    def __len__(self) -> int:
        return len(self._order_d)

    def largest(self, idx: np.ndarray, m: int) -> list[int]:
        """The m indices among `idx` with the largest names, largest first."""
        index_of_d = {int(d): int(i) for d, i in zip(self._order_d[idx], idx)} if len(idx) <= 4 * m else None
        ds = self._graph.largest(self._order_d[idx], m)
        if index_of_d is None:
            index_of_d = {d: int(np.flatnonzero(self._order_d == d)[0]) for d in ds}
        return [index_of_d[d] for d in ds]


class Dag:
    """Candidates in a topological order (oldest first), their chains, and closure sums."""

    def __init__(self, parents: Mapping[str, Sequence[str]]):
        graph = self.graph = Revisions.from_mapping(parents)
        n = self.n = len(graph)
        cd = np.repeat(np.arange(n, dtype=np.int64), np.diff(graph.ptr))  # child, rev-list position
        pd = graph.par  # its parent
        # git's list order: rev-list order reversed (oldest first); used for tie-breaking.
        if np.any(pd < cd):  # a parent listed before its child: sort topologically
            order_d = self._kahn(n, cd, pd)
            index_of_d = np.empty(n, dtype=np.int64)
            index_of_d[order_d] = np.arange(n)
            self.gitpos = (n - 1 - order_d).astype(np.int64)
        else:
            order_d = n - 1 - np.arange(n, dtype=np.int64)
            index_of_d = order_d
            self.gitpos = np.arange(n, dtype=np.int64)
        self.index = _Index(graph, index_of_d)
        self.revs = _Names(graph, order_d)
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
        idx = np.arange(n)
        heads = np.flatnonzero(~cont)  # ascending: a parent chain's head precedes its children's
        if bool(np.all(first_parent[cont] == idx[cont] - 1)):
            # Chains of consecutive indices (a linear history): the head is the last one before.
            nxt = heads[np.cumsum(~cont) - 1]
            dist = idx - nxt
        else:
            # Pointer jumping: the head of each node's chain and its position in it.
            nxt = np.where(cont, first_parent, idx)
            dist = cont.astype(np.int64)
            while True:
                jump = nxt[nxt]
                if np.array_equal(jump, nxt):
                    break
                dist = dist + dist[nxt]
                nxt = jump
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
        # Each chain's parent chains. A chain with one parent chain (`up`) has that chain's
        # ancestors plus it; only merge chains (several parents) keep a row of ancestor bits.
        self._width = (c_n + 7) // 8
        up = np.full(c_n, -1, dtype=np.int64)
        heads_l = heads.tolist()
        merges: list[int] = []
        for c, h in enumerate(heads_l):
            k = int(self._par_ptr[h + 1] - self._par_ptr[h])
            if k == 1:
                up[c] = self.chain[self._par[self._par_ptr[h]]]
            elif k > 1:
                up[c] = -2
                merges.append(c)
        self._up = up
        self._up_list = up.tolist()
        self._singles_list = np.flatnonzero(up >= 0).tolist()
        self._merges = np.asarray(merges, dtype=np.int64)
        self._row_of = np.full(c_n, -1, dtype=np.int64)
        self._row_of[self._merges] = np.arange(len(merges))
        self._m = np.zeros((len(merges), self._width), dtype=np.uint8)
        for r, c in enumerate(merges):
            h = heads_l[c]
            for p in self._par[self._par_ptr[h] : self._par_ptr[h + 1]].tolist():
                self._m[r] |= self._packed_row(int(self.chain[p]), include_self=True)

    def _packed_row(self, c: int, include_self: bool = False) -> np.ndarray:
        """Packed bits of the strict ancestor chains of chain c (and c itself if asked)."""
        path = [c] if include_self else []
        up = self._up
        while up[c] >= 0:
            c = int(up[c])
            path.append(c)
        row = self._m[self._row_of[c]].copy() if up[c] == -2 else np.zeros(self._width, dtype=np.uint8)
        for d in path:
            row[d >> 3] |= np.uint8(0x80 >> (d & 7))
        return row

    # ------------------------------------------------------------- structure
    def parents_of(self, i: int) -> tuple[int, ...]:
        return tuple(self._par[self._par_ptr[i] : self._par_ptr[i + 1]].tolist())

    def n_parents_in(self, i: int, mask: np.ndarray) -> int:
        """How many parents of candidate i the boolean mask holds."""
        return int(mask[self._par[self._par_ptr[i] : self._par_ptr[i + 1]]].sum())

    def _row(self, c: int) -> np.ndarray:
        return np.unpackbits(self._packed_row(c), count=self.n_chains).astype(bool)

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
        return bool(self._packed_row(cb)[ca >> 3] & (0x80 >> (ca & 7)))

    # ----------------------------------------------------------- closure sums
    def _chain_totals(self, vp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cs = np.concatenate(([0], np.cumsum(vp)))
        return cs, cs[self._start[1:]] - cs[self._start[:-1]]

    def _blocks(self, rows: np.ndarray, cols: np.ndarray):
        """Row blocks of the chain matrix, unpacked only over the byte span of `cols`, as float32
        (exact for counts below 2**24; weights need no more than that for a choice)."""
        b0, b1 = int(cols[0]) >> 3, (int(cols[-1]) >> 3) + 1
        sub = cols - 8 * b0
        step = max(1, _BLOCK // (8 * (b1 - b0)))
        for lo in range(0, len(rows), step):
            bits = np.unpackbits(self._m[rows[lo : lo + step], b0:b1], axis=1)
            yield lo, lo + step, bits[:, sub].astype(np.float32)

    def anc_sums(self, v: np.ndarray) -> np.ndarray:
        """out[i] = sum of v over the ancestors-or-self of i (chains without weight get their own part only)."""
        vp = np.asarray(v)[self._perm]
        cs, tot = self._chain_totals(vp)
        out_p = cs[1:] - cs[self._start[self._chain_p]]
        if self.n_chains > 1:
            above = np.zeros(self.n_chains, dtype=np.float64)
            live = np.flatnonzero(tot)
            rows = self._merges[tot[self._merges] != 0]
            if len(live) and len(rows):
                exact = (tot.dtype.kind in "iu" or bool(np.all(tot == np.round(tot)))) and tot.sum() < 2**24
                vec = tot[live].astype(np.float32 if exact else np.float64)
                for lo, hi, bits in self._blocks(self._row_of[rows], live):
                    above[rows[lo:hi]] = bits @ vec
            up, acc, totl = self._up_list, above.tolist(), tot.tolist()
            for c in self._singles_list:  # parent chains first (ids are topological)
                d = up[c]
                acc[c] = acc[d] + totl[d]
            out_p = out_p + np.asarray(acc).astype(tot.dtype)[self._chain_p]
        out = np.empty_like(out_p)
        out[self._perm] = out_p
        return out

    def desc_sums(self, v: np.ndarray) -> np.ndarray:
        """out[i] = sum of v over the descendants-or-self of i."""
        vp = np.asarray(v)[self._perm]
        cs, tot = self._chain_totals(vp)
        out_p = cs[self._start[self._chain_p + 1]] - cs[:-1]
        if self.n_chains > 1:
            # sub[c]: the weight of the chains whose single-parent path leads up to c (c too).
            up, acc = self._up_list, tot.astype(np.float64).tolist()
            for c in reversed(self._singles_list):
                acc[up[c]] += acc[c]
            sub = np.asarray(acc)
            below = sub - tot
            rows = self._merges[sub[self._merges] != 0]
            if len(rows):
                for lo, hi, bits in self._blocks(self._row_of[rows], np.arange(self.n_chains)):
                    below += sub[rows[lo:hi]] @ bits
            out_p = out_p + below.astype(tot.dtype)[self._chain_p]
        out = np.empty_like(out_p)
        out[self._perm] = out_p
        return out


def contradiction(dag: Dag, i: int, k: int, n: int, observed_bad: Collection[int], observed_good: Collection[int]) -> str:
    """Why a deterministic observation (k fails of n runs at candidate i) cannot hold, given the
    candidates observed bad and good before (for the ContradictionError)."""
    rev = dag.revs[i]
    if k and n - k:
        return f"{rev} both passed and failed, but the probe is deterministic: rerun it or declare noise"
    if n - k:  # observed good
        if i in observed_bad:
            return f"{rev} observed good, but it was observed bad before"
        for b in observed_bad:
            if dag.is_ancestor(b, i):
                return f"{rev} observed good, but its ancestor {dag.revs[b]} was observed bad"
        bads = ", ".join(dag.revs[b] for b in observed_bad) or "none"
        return f"{rev} observed good, but every remaining suspect is its ancestor (observed bad: {bads})"
    if i in observed_good:
        return f"{rev} observed bad, but it was observed good before"
    for g in observed_good:
        if dag.is_ancestor(i, g):
            return f"{rev} observed bad, but its descendant {dag.revs[g]} was observed good"
    goods = ", ".join(dag.revs[g] for g in observed_good) or "none"
    return f"{rev} observed bad, but none of its ancestors is still a suspect (observed good: {goods})"
