"""The wheel installs only `ctcd`; `flows/` and `tasks/` are found from the project root by the app layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"


def test_wheel_installs_only_the_ctcd_package(tmp_path: Path) -> None:
    # Build from a copy: a setuptools build writes build/ and *.egg-info into the source tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("ctcd", "tasks", "flows"):  # tasks/ and flows/ present, as in a checkout
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    # uv (installed into the venv by `make install`) builds as any PEP 517 front end does, in an isolated
    # environment with the build-system requirements of pyproject.toml.
    done = subprocess.run(
        [str(UV), "build", "--wheel", "--out-dir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = dist.glob("ctcd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    top_level = {name.split("/", 1)[0] for name in names}
    assert {n for n in top_level if not n.endswith(".dist-info")} == {"ctcd"}
    assert [n for n in top_level if n.endswith(".dist-info")] == [wheel.name.split("-py3")[0] + ".dist-info"]
    # The whole package is there, subpackages included, and the console script points into it.
    assert {"ctcd/settings.py", "ctcd/app/cli.py", "ctcd/serving/__init__.py"} <= set(names)
    info = wheel.name.split("-py3")[0] + ".dist-info"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(f"{info}/top_level.txt").decode().split() == ["ctcd"]
        assert "ctcd = ctcd.app.cli:main" in archive.read(f"{info}/entry_points.txt").decode()


def test_the_app_layer_finds_flows_and_tasks_from_the_project_root(tmp_path: Path) -> None:
    # Only `ctcd` on the path, as an editable install of the wheel leaves it (a link to the checkout's
    # package), no site-packages (-S) and a working directory without flows/ or tasks/.
    site = tmp_path / "site"
    site.mkdir()
    (site / "ctcd").symlink_to(REPO / "ctcd", target_is_directory=True)
    probe = "import ctcd.app, flows, tasks; print(flows.__path__[0]); print(tasks.__path__[0])"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(site)

    without_app = subprocess.run(
        [sys.executable, "-S", "-c", "import flows"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert without_app.returncode != 0  # nothing else on this path provides them

    done = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(REPO / "flows"), str(REPO / "tasks")]
