"""DVC data support, the short import path: `from bisector.dvcdata import DvcWorkspace`.

The implementation lives in the `bisector.data` package (workspace, history, files, dvccli).
"""

from bisector.data import *  # noqa: F401,F403
from bisector.data import __all__  # noqa: F401
