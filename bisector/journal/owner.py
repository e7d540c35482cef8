"""Who started a session: the owner marker of a journal's `start` event.

A journal under `.bisector/sessions/` may come from anyone (committed to the repository,
copied from another machine), and resuming it runs its build and probe. So a session is
resumed only when its `start` event carries this user's marker: the user name, the host
and an HMAC of the session id keyed by a random secret kept in the repository's state
folder (`.git/bisector/owner-secret`, never in the working tree, never committed). The
journal holds the HMAC, not the secret, so a shared journal gives nobody a way to forge one.
"""

from __future__ import annotations

import getpass
import hmac
import os
import secrets
import socket
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.io.state import state_dir

SECRET_FILE = "owner-secret"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _secret(repo: Path, create: bool) -> bytes | None:
    """This repository's owner secret (made on first use, readable by this user only)."""
    path = state_dir(repo) / SECRET_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # made meanwhile by another process: read that one
            return _secret(repo, create=False)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        return value
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        value = f.read(256).strip()
    return value or None


def _mac(secret: bytes, session: str, user: str, host: str) -> str:
    return hmac.new(secret, f"{session}\0{user}\0{host}".encode(), "sha256").hexdigest()


def owner_marker(repo: Path, session: str) -> dict[str, str]:
    """The marker a new session's `start` event carries."""
    user, host = _user(), socket.gethostname()
    secret = _secret(repo, create=True)
    assert secret is not None
    return {"user": user, "host": host, "mac": _mac(secret, session, user, host)}


def check_owner(repo: Path, start: Mapping[str, Any], journal: Path) -> None:
    """Refuse, in one line, to resume a session this user did not start on this machine here."""
    marker = start.get("owner")
    session = str(start.get("session", journal.stem))
    user, host = _user(), socket.gethostname()
    why = None
    if not isinstance(marker, Mapping):
        why = "it carries no owner marker (copied, committed, or written by an older bisector)"
    elif marker.get("user") != user or marker.get("host") != host:
        why = f"it was started by {marker.get('user')!s:.40}@{marker.get('host')!s:.60}, not by {user}@{host}"
    else:
        secret = _secret(repo, create=False)
        mac = marker.get("mac")
        if secret is None or not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(secret, session, user, host)):
            why = "its owner marker does not match this repository's (copied or committed from another checkout)"
    if why is not None:
        raise UsageError(f"the unfinished session in {journal} is not resumed: {why}; its build and probe are "
                         "not run. Drop it with `bisector reset`, then start your own search")
