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
from bisector.io.data.workspace import (
    CHECKOUT_FAILED,
    CORRUPTED,
    CROSS_DEVICE,
    LINK_UNSUPPORTED,
    NOT_COMBINABLE,
    NOT_PUSHED,
    PLUGIN_MISSING,
    REMOTE_UNREACHABLE,
    DataUnavailable,
    DvcWorkspace,
    after_build_check,
    default_build_command,
    has_dvc,
)

__all__ = [
    "CHECKOUT_FAILED", "CORRUPTED", "CROSS_DEVICE", "LINK_UNSUPPORTED", "NOT_COMBINABLE", "NOT_PUSHED", "PLUGIN_MISSING", "REMOTE_UNREACHABLE",
    "DataChange", "DataInput", "DataRevision", "DataUnavailable", "DvcWorkspace",
    "after_build_check", "attribution", "classify_culprit", "data_diff", "data_revisions",
    "default_build_command", "has_dvc", "params_diff",
]
