"""DVC data for bisector: the data-aware workspace, data history and attribution (see docs/dvc.md).

Nothing here imports `dvc` at import time: the user's `dvc` CLI runs the mutating steps, and
`dvc.config` is imported only when a DVC workspace opens.
"""

from bisector.io.data.files import DataInput
from bisector.io.data.history import (
    DataChange,
    DataRevision,
    attribution,
    classify_culprit,
    data_diff,
    data_revisions,
    params_diff,
)
from bisector.io.data.causes import (
    CHECKOUT_FAILED,
    CORRUPTED,
    CROSS_DEVICE,
    LINK_UNSUPPORTED,
    MISSING,
    NO_REMOTE,
    NOT_COMBINABLE,
    NOT_IN_CACHE,
    NOT_PUSHED,
    PLUGIN_MISSING,
    REMOTE_UNREACHABLE,
    DataUnavailable,
)
from bisector.io.data.buildcheck import after_build_check
from bisector.io.data.workspace import (
    DvcWorkspace,
    default_build_command,
    has_dvc,
)

__all__ = [
    "CHECKOUT_FAILED", "CORRUPTED", "CROSS_DEVICE", "LINK_UNSUPPORTED", "MISSING", "NO_REMOTE", "NOT_COMBINABLE",
    "NOT_IN_CACHE", "NOT_PUSHED", "PLUGIN_MISSING", "REMOTE_UNREACHABLE",
    "DataChange", "DataInput", "DataRevision", "DataUnavailable", "DvcWorkspace",
    "after_build_check", "attribution", "classify_culprit", "data_diff", "data_revisions",
    "default_build_command", "has_dvc", "params_diff",
]
