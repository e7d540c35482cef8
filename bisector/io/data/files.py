"""Reading DVC files (`*.dvc`, `dvc.lock`, `dvc.yaml`, params) from git objects or a folder, without DVC.

A *data input* is what a commit's data is made of: every output of a data-source `.dvc`
file (made by `dvc add` / `dvc import`: it has `outs` and no `cmd`), plus every dependency
of a `dvc.lock` stage that is neither an output of another stage nor tracked by git (an
external or untracked input). Code (git-tracked files, params) is never a data input.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from bisector.core.errors import UsageError
from bisector.io.git import git, git_env, show
from bisector.io.limits import parse_limited
from bisector.io.process import capture, run_process



def _yaml() -> Any:
    """PyYAML, imported on the first DVC file read (~20 ms a `bisector run` without DVC saves)."""
    import yaml

    return yaml


@dataclass(frozen=True)
class DataInput:
    """One DVC-tracked input: its path (repo-relative, posix), content hash and where it is declared."""

    path: str
    hash: str  # "md5:<hex>" (a directory's ends in ".dir"), or "etag:<...>" for cloud-versioned outs
    size: int | None
    source: str  # the `.dvc` file or `dvc.lock` that declares it
    legacy: bool = False  # DVC 2 hash (cache layout `<cache>/ab/cdef`, not `<cache>/files/md5/ab/cdef`)

    @property
    def is_dir(self) -> bool:
        return self.hash.endswith(".dir")


def load_yaml(text: str) -> Any:
    """Parse YAML (PyYAML's C loader when it was built with one); None when it is not YAML."""
    try:
        yaml = _yaml()
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return parse_limited(lambda t: yaml.load(t, Loader=loader), text, "YAML")
    except Exception:  # not YAML, or over the limits of bisector.io.limits (a hostile file)
        return None


def is_dvcfile(path: str) -> bool:
    return path.endswith(".dvc") and not path.startswith(".dvc/") and posixpath.basename(path) != ".dvc"


def is_lockfile(path: str) -> bool:
    return posixpath.basename(path) == "dvc.lock"


def is_pipeline(path: str) -> bool:
    return posixpath.basename(path) == "dvc.yaml"


def uncached_outputs(pipeline: str, doc: Any) -> set[str]:
    """Outputs a `dvc.yaml` declares with `cache: false` (never in the cache, nothing to fetch)."""
    stages = doc.get("stages") if isinstance(doc, Mapping) else None
    found: set[str] = set()
    for stage in stages.values() if isinstance(stages, Mapping) else []:
        for key in ("outs", "metrics", "plots"):
            for item in (stage.get(key) or []) if isinstance(stage, Mapping) else []:
                if isinstance(item, Mapping):
                    for name, opts in item.items():
                        if isinstance(opts, Mapping) and opts.get("cache") is False:
                            found.add(_join(pipeline, str(name)))
    return found


def declared_outputs(pipeline: str, doc: Any) -> set[str]:
    """Every output a `dvc.yaml` declares (outs, metrics, plots), cached or not."""
    stages = doc.get("stages") if isinstance(doc, Mapping) else None
    found: set[str] = set()
    for stage in stages.values() if isinstance(stages, Mapping) else []:
        for key in ("outs", "metrics", "plots"):
            for item in (stage.get(key) or []) if isinstance(stage, Mapping) else []:
                names = item.keys() if isinstance(item, Mapping) else [item]
                found.update(_join(pipeline, str(n)) for n in names)
    return found


def _join(base_file: str, path: str) -> str:
    if path.startswith("/") or "://" in path:
        return path  # external path: kept as written
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_file), path))


def _out_hash(out: Mapping[str, Any]) -> tuple[str, bool] | None:
    for key in ("md5", "etag", "checksum"):
        if out.get(key):
            legacy = key == "md5" and out.get("hash") != "md5"
            return f"{'md5' if key == 'md5' else key}:{out[key]}", legacy
    return None


def _entry(item: Any) -> Mapping[str, Any] | None:
    return item if isinstance(item, Mapping) and isinstance(item.get("path"), str) else None


def dvcfile_inputs(dvcfile: str, doc: Any) -> dict[str, DataInput]:
    """The outputs of a data-source `.dvc` file (empty for a legacy stage file with `cmd`)."""
    if not isinstance(doc, Mapping) or doc.get("cmd") or not isinstance(doc.get("outs"), list):
        return {}
    found = {}
    for item in doc["outs"]:
        out = _entry(item)
        h = _out_hash(out) if out else None
        if out is None or h is None:
            continue
        path = _join(dvcfile, out["path"])
        size = out.get("size")
        found[path] = DataInput(path, h[0], size if isinstance(size, int) else None, dvcfile, h[1])
    return found


def lock_stages(lockfile: str, doc: Any) -> list[tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]]:
    """(deps, outs) of each stage of a `dvc.lock`, paths made repo-relative."""
    stages = doc.get("stages") if isinstance(doc, Mapping) else None
    result = []
    if not isinstance(stages, Mapping):
        return result
    for stage in stages.values():
        if not isinstance(stage, Mapping):
            continue
        lists = []
        for key in ("deps", "outs"):
            items = []
            for item in stage.get(key) or []:
                e = _entry(item)
                if e is not None:
                    items.append({**e, "path": _join(lockfile, e["path"])})
            lists.append(items)
        result.append((lists[0], lists[1]))
    return result


def lock_outputs(lockfile: str, doc: Any) -> list[str]:
    return [o["path"] for _, outs in lock_stages(lockfile, doc) for o in outs]


def lock_output_inputs(lockfile: str, doc: Any) -> list[DataInput]:
    """The outputs of a `dvc.lock`'s stages with their hashes (to find them in the cache)."""
    found = []
    for _, outs in lock_stages(lockfile, doc):
        for o in outs:
            h = _out_hash(o)
            size = o.get("size")
            if h is not None:
                found.append(DataInput(o["path"], h[0], size if isinstance(size, int) else None, lockfile, h[1]))
    return found


def lock_dep_candidates(lockfile: str, doc: Any) -> dict[str, DataInput]:
    """Lock deps that are no stage's output: data inputs unless git tracks them (checked by the caller)."""
    stages = lock_stages(lockfile, doc)
    produced = {o["path"] for _, outs in stages for o in outs}
    found = {}
    for deps, _ in stages:
        for d in deps:
            h = _out_hash(d)
            if h is None or _under_any(d["path"], produced):
                continue
            size = d.get("size")
            found[d["path"]] = DataInput(d["path"], h[0], size if isinstance(size, int) else None, lockfile, h[1])
    return found


def _under_any(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def matches_paths(candidates: Iterable[str], paths: Sequence[str]) -> bool:
    """Whether any candidate path equals, lies under, or globs one of `paths` (no paths: all match)."""
    if not paths:
        return True
    for p in paths:
        p = p.rstrip("/")
        for cand in candidates:
            if cand == p or cand.startswith(p + "/") or fnmatch.fnmatchcase(cand, p):
                return True
    return False


def fingerprint(inputs: Mapping[str, DataInput]) -> str:
    """A hash of the data state: sorted (path, content hash) of every input."""
    h = hashlib.sha256()
    for path in sorted(inputs):
        h.update(f"{path}\0{inputs[path].hash}\n".encode())
    return h.hexdigest()


# ------------------------------------------------------------------ git access


def cat_blobs(repo: Path, names: Iterable[str]) -> dict[str, str | None]:
    """Contents of many objects (`<oid>` or `<rev>:<path>`) in one `git cat-file --batch`."""
    names = list(dict.fromkeys(names))
    if not names:
        return {}
    # Bytes in, bytes out (run_process does not translate newlines): the sizes git reports
    # are byte counts, so CRLF files must not be turned into LF before we cut the stream.
    res = run_process(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        cwd=repo,
        env=git_env(),
        stdin_data=("\n".join(names) + "\n").encode(),
    )
    data = res.output.encode("utf-8")
    out: dict[str, str | None] = {}
    pos = 0
    for name in names:
        nl = data.index(b"\n", pos)
        header = data[pos:nl].decode("utf-8", "replace").split()
        pos = nl + 1
        if len(header) != 3 or header[-1] == "missing":
            out[name] = None
            continue
        size = int(header[2])
        body = data[pos:pos + size]
        pos += size + 1
        out[name] = body.decode("utf-8", "replace") if header[1] == "blob" else None
    return out


def existing_paths(repo: Path, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (rev, path) pairs name a file or folder in git, in one `git cat-file --batch-check`."""
    pairs = list(dict.fromkeys(pairs))
    if not pairs:
        return set()
    res = capture(
        ["git", "-C", str(repo), "cat-file", "--batch-check"],
        cwd=repo,
        input="".join(f"{rev}:{path}\n" for rev, path in pairs),
        env=git_env(),
    )
    lines = res.stdout.splitlines()
    return {pair for pair, line in zip(pairs, lines) if not line.endswith(" missing")}


def dvc_tree_files(repo: Path, rev: str) -> dict[str, str]:
    """{path: blob oid} of every `*.dvc` file, `dvc.lock` and `dvc.yaml` in the tree of `rev`."""
    out = git(repo, "ls-tree", "-r", "-z", "--full-tree", rev)
    files = {}
    for rec in out.split("\0"):
        if not rec:
            continue
        meta, _, path = rec.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob" and (is_dvcfile(path) or is_lockfile(path) or is_pipeline(path)):
            files[path] = parts[2]
    return files


class InputReader:
    """Turns {path: blob} states of DVC files into data inputs; parses each blob once."""

    def __init__(self, repo: Path):
        self.repo = repo
        self._docs: dict[str, Any] = {}

    def prefetch(self, oids: Iterable[str]) -> None:
        todo = [o for o in oids if o not in self._docs]
        for oid, text in cat_blobs(self.repo, todo).items():
            self._docs[oid] = load_yaml(text) if text is not None else None

    def doc(self, oid: str) -> Any:
        if oid not in self._docs:
            self.prefetch([oid])
        return self._docs[oid]

    def split(self, files: Mapping[str, str]) -> tuple[dict[str, DataInput], dict[str, DataInput]]:
        """(inputs of data-source .dvc files, lock-dep candidates) of one state."""
        self.prefetch(files.values())
        sources: dict[str, DataInput] = {}
        lock_deps: dict[str, DataInput] = {}
        for path in sorted(files):
            doc = self._docs[files[path]]
            if is_dvcfile(path):
                sources.update(dvcfile_inputs(path, doc))
            elif is_lockfile(path):
                lock_deps.update(lock_dep_candidates(path, doc))
        # A lock dep under a .dvc output is already counted through that .dvc file.
        lock_deps = {p: d for p, d in lock_deps.items() if not _under_any(p, sources)}
        return sources, lock_deps


def inputs_at(repo: Path, rev: str, reader: InputReader | None = None) -> dict[str, DataInput]:
    """All data inputs of commit `rev` (see the module docstring), keyed by path."""
    reader = reader or InputReader(repo)
    sources, lock_deps = reader.split(dvc_tree_files(repo, rev))
    tracked = existing_paths(repo, [(rev, p) for p in lock_deps])
    sources.update({p: d for p, d in lock_deps.items() if (rev, p) not in tracked})
    return sources


def data_source_files(files: Mapping[str, str], reader: InputReader) -> list[str]:
    """The data-source `.dvc` files among a {path: blob} state (those a data overlay replaces)."""
    reader.prefetch(files.values())
    return [p for p in sorted(files) if is_dvcfile(p) and dvcfile_inputs(p, reader.doc(files[p]))]


def read_worktree_dvcfile(path: Path, rel: str) -> dict[str, DataInput]:
    try:
        return dvcfile_inputs(rel, load_yaml(path.read_text()))
    except OSError:
        return {}


def _plain(v: Any) -> bool:
    """A value a pins file can hold as is: a scalar, or a list of scalars."""
    if isinstance(v, list):
        return all(isinstance(x, (str, int, float, bool)) for x in v)
    return isinstance(v, (str, int, float, bool))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys (`train.lr`): the one flattening of params, configs and evidence.

    Lists of plain values stay lists (a list holding mappings is numbered: `layers.0.size`);
    None and empty mappings are dropped; anything else that is not plain becomes its str().
    """
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and not _plain(value):
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    elif value is not None and prefix:
        out[prefix] = value if _plain(value) else str(value)
    return out


# ------------------------------------------------------- what a revision holds
def show_file(repo: Path, rev: str, path: str) -> str | None:
    """The text of `path` at `rev`, or None when it is not there."""
    return show(repo, rev, path)


def parse_yaml(text: str, where: str) -> Any:
    """YAML that must parse, within the limits of bisector.io.limits: a one-line UsageError
    naming `where` otherwise (a billion-laughs params.yaml, deep nesting)."""
    yaml = _yaml()
    try:
        return parse_limited(yaml.safe_load, text, where)
    except yaml.YAMLError as exc:
        raise UsageError(f"{where}: invalid YAML: {str(exc).splitlines()[0]}") from None


def data_hashes(repo: Path, rev: str) -> dict[str, str]:
    """The data inputs of `rev` (see the module docstring) -> hash ("md5:..."); {} without DVC."""
    return {p: d.hash for p, d in sorted(inputs_at(repo, rev).items())}


def params_at(repo: Path, rev: str) -> dict[str, Any]:
    """`params.yaml` at `rev`, flattened; {} when there is none."""
    text = show_file(repo, rev, "params.yaml")
    return flatten(parse_yaml(text, f"params.yaml at {rev[:10]}")) if text else {}
