"""Why a step's data cannot be had: the causes, the one-line error, and the checks that tell
them apart (DVC's own message reads the same for most of them: `dvc fetch` exits 0 with
"do not exist neither locally nor on remote" when the network is down, too).

Each cause has its own advice: `dvc push` only when the object was not pushed; `--no-data`
whenever the question may not need the data at all.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Mapping, Sequence
from urllib.parse import urlsplit

from bisector.core.errors import BisectorError
from bisector.io.data.dvccli import local_path, pip_extra, plugin_installed, url_scheme

# The causes DataUnavailable names.
NOT_PUSHED = "not pushed to the remote"
REMOTE_UNREACHABLE = "remote unreachable"
NOT_IN_CACHE = "missing from the cache"  # offline (asked, or after a failed fetch): the remote was not asked
NO_REMOTE = "no remote configured"
PLUGIN_MISSING = "plugin missing"
LINK_UNSUPPORTED = "link type unsupported"
CROSS_DEVICE = "different filesystem"
CHECKOUT_FAILED = "dvc checkout failed"
CORRUPTED = "corrupted cache object"  # found only with verify = true (DVC never re-hashes)
NOT_COMBINABLE = "not combinable"  # code or data revision before `dvc init` on a crossing

# The causes that mean "the data is not here" (not a fault of the build, the probe or DVC).
MISSING = (NOT_PUSHED, REMOTE_UNREACHABLE, NOT_IN_CACHE, NO_REMOTE, PLUGIN_MISSING)
NO_DATA_HINT = "or run with --no-data if the question needs no data"

# Hosts that a cloud remote's URL does not name (the bucket is not a host name).
_CLOUD_HOSTS = {"s3": ("s3.amazonaws.com", 443), "gs": ("storage.googleapis.com", 443),
                "gcs": ("storage.googleapis.com", 443), "gdrive": ("www.googleapis.com", 443)}
_PORTS = {"ssh": 22, "http": 80, "https": 443, "webdav": 80, "webdavs": 443, "hdfs": 8020, "webhdfs": 9870}


class DataUnavailable(BisectorError):
    """The data of a step cannot be materialized. The session should mark the step SKIP.

    `path` is the data file, `rev` the revision whose `.dvc` file asked for it, `cause` one of
    the causes above. `str()` is one line naming all three and the fix.
    """

    def __init__(self, path: str, rev: str, cause: str, detail: str = "", fix: str = ""):
        self.path, self.rev, self.cause = path, rev, cause
        msg = f"data {path} at {rev[:10]} is unavailable: {cause}"
        if detail:
            msg += f" ({detail})"
        if fix:
            msg += f": {fix}"
        super().__init__(msg)


def remote_problem(url: str, options: Mapping[str, str] | None = None, timeout: float = 2.0) -> str | None:
    """Why the remote at `url` cannot be reached, or None when it may be: a cheap check (a local
    folder exists; a TCP connection to the host opens) made once per session before any fetch."""
    scheme = url_scheme(url)
    if scheme == "local":
        root = local_path(url)
        return None if root.is_dir() else f"folder {root} does not exist"
    endpoint = (options or {}).get("endpointurl")
    parts = urlsplit(endpoint or url)
    host, port = parts.hostname, parts.port
    if not endpoint and scheme in _CLOUD_HOSTS:
        host, port = _CLOUD_HOSTS[scheme]
    if not host:
        return None  # nothing to try: let DVC answer
    port = port or _PORTS.get(parts.scheme or scheme, 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def diagnose(
    *, path: str, rev: str, digest: str, source: str, in_cache: bool, link_types: Sequence[str],
    cache_dir: Path, workspace: Path, remote: tuple[str, str] | None, offline: str | None,
    fetch_output: str, fetch_rc: int, env: Mapping[str, str],
) -> DataUnavailable:
    """The cause of a failed checkout of one input, checked ourselves: cache, link type,
    filesystem, remote configured, reachable (or offline), plugin, pushed.

    `offline` is None when the remote was asked, else why it was not (`--offline`, or the
    first failed fetch of the session). `remote` is (name, url) of the default remote."""
    where = f"{digest[:8]} from {source}"
    links = ",".join(link_types)

    def fail(cause: str, detail: str, fix: str) -> DataUnavailable:
        return DataUnavailable(path, rev, cause, detail, fix)

    if in_cache:
        if "copy" in link_types:
            return fail(CHECKOUT_FAILED, f"{where} is in the cache but `dvc checkout` failed",
                        "run `dvc checkout` in a checkout of it to see why")
        if "hardlink" in link_types and _dev(cache_dir) != _dev(workspace):
            return fail(CROSS_DEVICE, f"cache {cache_dir} and workspace {workspace} are on different "
                        f"filesystems, link type {links}",
                        "put them on one filesystem or use the default link type reflink,copy")
        return fail(LINK_UNSUPPORTED, f"{where}: this filesystem does not support link type {links}",
                    "use the default link type reflink,copy")
    if remote is None:
        return fail(NO_REMOTE, f"{where} is not in the cache {cache_dir} and no default DVC remote is set",
                    f"configure one (`dvc remote add -d NAME URL`) and `dvc fetch`, {NO_DATA_HINT}")
    name, url = remote
    scheme = url_scheme(url)
    if scheme != "local" and not plugin_installed(scheme, env, workspace):
        return fail(PLUGIN_MISSING, f"remote '{name}' is {scheme}:// and this DVC has no {scheme} support",
                    f"pip install 'dvc[{pip_extra(scheme)}]', {NO_DATA_HINT}")
    if offline is not None and offline.startswith("unreachable: "):
        return fail(REMOTE_UNREACHABLE, f"remote '{name}' ({url}): {offline.removeprefix('unreachable: ')}",
                    f"check the network, the mount and the remote's credentials, {NO_DATA_HINT}")
    if offline is not None:
        return fail(NOT_IN_CACHE, f"{where} is not in the cache {cache_dir}; the remote was not asked ({offline})",
                    f"`dvc fetch` it when remote '{name}' can be reached, {NO_DATA_HINT}")
    if fetch_rc == 0 or any(m in fetch_output for m in _REMOTE_ANSWERED):
        return fail(NOT_PUSHED, f"{where} is in neither the cache nor remote '{name}' ({url})",
                    f"run `dvc push` in a checkout of {rev[:10]}, or let the step be skipped")
    last = (fetch_output.strip().splitlines() or ["fetch failed"])[-1]
    return fail(REMOTE_UNREACHABLE, f"remote '{name}' ({url}): {last}",
                f"check the network and the remote's credentials, {NO_DATA_HINT}")


# What `dvc fetch` says when it reached the remote and objects were missing there.
_REMOTE_ANSWERED = ("neither locally nor on remote", "Missing cache files", "No such file or directory")


def fetch_failed(output: str, rc: int) -> str | None:
    """Why a `dvc fetch` failed for the network (the session then goes offline), or None."""
    if rc == 0 or any(m in output for m in _REMOTE_ANSWERED):
        return None  # the remote answered: some objects are not there (not pushed)
    lines = [ln for ln in output.strip().splitlines() if ln.strip() and not ln.startswith("Having any troubles")]
    last = re.sub(r"^ERROR:\s*", "", lines[-1]) if lines else f"exit {rc}"
    return f"unreachable: fetch failed: {last[:200]}"


def _dev(path: Path) -> int | None:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return os.stat(p).st_dev
    except OSError:
        return None
