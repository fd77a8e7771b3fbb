"""The import-linter contracts of pyproject.toml catch an upward import in a module nobody listed.

`make test` runs `lint-imports` on the project itself; this checks that the contracts cover new modules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

PROBES = {
    "ctcd/new_core_module.py": "import flows.training\nfrom ctcd.app import cli\nfrom tasks import policy\n",
    "tasks/new_step.py": "from flows import ingest\nimport ctcd.app.demo\n",
    "flows/new_flow.py": "from ctcd.app.stack import *\n",
}
EXPECTED = [
    "- ctcd.new_core_module -> ctcd.app.cli (l.2)",
    "- ctcd.new_core_module -> flows.training (l.1)",
    "- ctcd.new_core_module -> tasks.policy (l.3)",
    "- tasks.new_step -> flows.ingest (l.1)",
    "- tasks.new_step -> ctcd.app.demo (l.2)",
    "- flows.new_flow -> ctcd.app.stack (l.1)",
]


def test_an_upward_import_in_a_new_module_breaks_the_contracts(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(REPO / "pyproject.toml", project / "pyproject.toml")
    for name in ("ctcd", "tasks", "flows"):
        shutil.copytree(REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    for path, text in PROBES.items():
        (project / path).write_text(text, encoding="utf-8")
    # As `make test` runs it: from the project root, which lint-imports puts on sys.path itself.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 1, done.stdout + done.stderr
    violations = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    assert set(EXPECTED) <= set(violations), done.stdout
    assert not [v for v in violations if "new_" in v and v not in EXPECTED]
