"""The application layer: the `ctcd` command line, its commands, the demo, the local stack and the
Prefect deployments. The only part of `ctcd` that imports `flows/`; nothing in core imports it.

The wheel packages only `ctcd`; `flows/` and `tasks/` are folders of the project root, which every entry
into this layer (the CLI, a test's or a worker's `from ctcd.app... import`) puts on `sys.path` here, once.
"""

import sys

from ctcd.settings import project_root

_root = str(project_root())
if _root not in sys.path:
    sys.path.insert(0, _root)
