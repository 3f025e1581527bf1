"""The worker image: its Beam version, and its install steps run in a fresh virtual environment.

No container is built here (that needs a Docker daemon and the SDK image from Docker
Hub). What the image runs is tested instead: the Dockerfile's COPY lines are replayed
into a temporary directory and docker/install.sh runs there against a new venv.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO, write_jsonl

tomllib = pytest.importorskip("tomllib")

DOCKERFILE = REPO / "Dockerfile"
INSTALL_SCRIPT = REPO / "docker" / "install.sh"


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned_version(requirements: list[str], package: str) -> str:
    [version] = [r.split("==")[1] for r in requirements if r.startswith(f"{package}==")]
    return version


def test_image_beam_version_is_pinned_version():
    text = DOCKERFILE.read_text()
    [default] = re.findall(r"^ARG BEAM_VERSION=(\S+)$", text, re.MULTILINE)
    [image] = re.findall(r"^FROM (\S+)$", text, re.MULTILINE)
    assert image == "apache/beam_python3.11_sdk:${BEAM_VERSION}"
    assert default == pinned_version(pyproject()["project"]["dependencies"], "apache-beam")


def test_install_script_torch_is_pinned_torch():
    [requirement] = re.findall(r'^TORCH_REQUIREMENT="(\S+)"$', INSTALL_SCRIPT.read_text(), re.M)
    extra = pyproject()["project"]["optional-dependencies"]["toxicity"]
    assert requirement == f"torch=={pinned_version(extra, 'torch')}"


def test_install_script_rejects_unknown_variant():
    result = subprocess.run(["sh", str(INSTALL_SCRIPT), "tpu"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "TORCH_VARIANT must be cpu or gpu, got 'tpu'" in result.stderr


def replay_copy_lines(context: Path) -> None:
    """Copy what the Dockerfile's COPY lines copy into its WORKDIR, with `context` as WORKDIR."""
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, destination = line.split()[1:]
        for source in sources:
            target = context / destination
            if destination.endswith("/") or len(sources) > 1:
                target = target / Path(source).name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / source).is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(REPO / source, target, ignore=ignore)
            else:
                shutil.copy2(REPO / source, target)


def link_dependencies(view: Path) -> None:
    """Link every installed distribution of this environment except this project into `view`."""
    own = ("feedback_annotate", "__editable__", "pipeline", "scorers", "schemas")
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(own) and entry.suffix != ".pth":
            (view / entry.name).symlink_to(entry)


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory):
    """A new venv where docker/install.sh installed the project copied as the image copies it.

    The venv imports this environment's dependencies (pip and setuptools included) through
    a .pth file and pip runs with --no-index, so nothing is downloaded: this checks the
    script, the packaging (a non-editable install that must contain every module) and
    the installed command, not dependency resolution from PyPI.
    """
    root = tmp_path_factory.mktemp("image")
    venv, context, view = root / "venv", root / "context", root / "dependencies"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    link_dependencies(view)
    [site_packages] = venv.glob("lib/python*/site-packages")
    (site_packages / "zz_dependencies.pth").write_text(f"{view}\n")
    replay_copy_lines(context)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.update(VIRTUAL_ENV=str(venv), PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0")
    env["TORCH_INDEX_URL"] = (root / "no-index").as_uri()
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        ["sh", "docker/install.sh", "cpu", "."], cwd=context, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    return venv, env, root


def test_install_puts_package_in_venv(installed_venv):
    venv, env, root = installed_venv
    code = "import pipeline.cli, scorers.base, schemas.output; print(pipeline.cli.__file__)"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], cwd=root, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
    [site_packages] = venv.glob("lib/python*/site-packages")
    assert result.stdout.decode().strip() == str(site_packages / "pipeline" / "cli" / "__init__.py")


def test_installed_annotate_runs(installed_venv):
    venv, env, root = installed_venv
    source = write_jsonl(root / "in.jsonl", [{"id": "c", "text": "x=1\n", "lang": "python"}])
    command = [str(venv / "bin" / "annotate"), "-q", "run", str(source), str(root / "out")]
    result = subprocess.run(
        command + ["--scorers", "code_style"], cwd=root, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "1 read, 0 rejected" in result.stdout.decode()
