"""jobtail: the logs of machine-learning training jobs, behind the ModelArts v2 training-job API.

The public surface of the package is re-exported here; everything else is internal.
"""

from jobtail.core.errors import JobtailError
from jobtail.core.store import LogStore

__version__ = "0.1.0"

__all__ = ["JobtailError", "LogStore", "__version__"]
