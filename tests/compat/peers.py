"""The peers' published code, fetched at test time, and the oracle process that runs it.

Each peer's source distribution is downloaded from PyPI with ``pip download --no-binary :all:
--no-deps NAME==VERSION`` into ``.cache/peer-sdists/`` (kept between runs; delete it to fetch
again) and unpacked into a directory of the test session. None of the four ships its tests
(the sdists hold the library alone), so ``tests/compat`` runs cases of its own against the
peer's real code and against our compatibility names, and compares what each does.

The peer's code runs in a separate process, :mod:`tests.compat.oracle`, on this virtualenv's
Python with the peers and their pure-Python dependencies (six, requests, urllib3) first on
``sys.path``: none of them is ever importable in the test process itself.

``python -m tests.compat.peers`` fills the cache ahead of time (CI fills it on first use).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "peer-sdists"
PIP_TIMEOUT = 300
ORACLE_TIMEOUT = 120


@dataclass(frozen=True)
class Sdist:
    """One peer's source distribution and what of it to import."""

    name: str
    version: str
    #: Path inside the unpacked sdist -> importable name in the peers' site directory.
    install: Mapping[str, str]

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


#: The peers, at the versions the landscape (and the issue) names: the newest releases.
SDISTS = (
    Sdist("gripcontrol", "4.4.0", {"src": "gripcontrol"}),
    Sdist("pubcontrol", "3.5.0", {"src": "pubcontrol"}),
    Sdist("django-grip", "3.5.2", {"django_grip.py": "django_grip.py"}),
    Sdist("faas-grip", "1.0.1", {"faas_grip.py": "faas_grip.py"}),
)
#: The peers' dependencies this virtualenv lacks, as wheels (PyJWT, Django and Werkzeug are
#: the project's own dev dependencies). Pure Python, so a wheel unzipped is installed.
WHEELS = ("six==1.17.0", "requests==2.34.2", "urllib3==2.8.0")


def _pip_download(requirement: str, destination: Path, *options: str) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *options]
    command += [requirement, "-d", str(destination)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=PIP_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"could not download {requirement} from PyPI (the compat tests need it):\n"
            f"$ {' '.join(command)}\n{result.stdout}{result.stderr}"
        )


def _cached(directory: Path, requirement: str, suffix: str) -> Path | None:
    name, version = requirement.split("==")
    for stem in {name, name.replace("-", "_")}:
        for path in directory.glob(f"{stem}-{version}{suffix}"):
            return path
    return None


def sdist_path(sdist: Sdist) -> Path:
    """The peer's ``.tar.gz``, downloaded into the cache unless it is there already."""
    path = _cached(CACHE, sdist.requirement, ".tar.gz")
    if path is None:
        _pip_download(sdist.requirement, CACHE, "--no-binary", ":all:")
        path = _cached(CACHE, sdist.requirement, ".tar.gz")
        if path is None:
            raise RuntimeError(f"pip saved no {sdist.requirement} source distribution in {CACHE}")
    return path


def wheel_path(requirement: str) -> Path:
    directory = CACHE / "wheels"
    path = _cached(directory, requirement, "-py*-none-any.whl")
    if path is None:
        _pip_download(requirement, directory, "--only-binary", ":all:")
        path = _cached(directory, requirement, "-py*-none-any.whl")
        if path is None:
            raise RuntimeError(f"pip saved no pure-Python wheel of {requirement} in {directory}")
    return path


def build_site(site: Path) -> Path:
    """Unpack every peer and wheel into ``site``, a directory to put first on ``sys.path``."""
    site.mkdir(parents=True, exist_ok=True)
    unpacked = site.parent / "sdists"
    for sdist in SDISTS:
        with tarfile.open(sdist_path(sdist)) as archive:
            archive.extractall(unpacked, filter="data")
        [root] = unpacked.glob(f"{sdist.name.replace('-', '?')}-{sdist.version}")
        for source, target in sdist.install.items():
            if (root / source).is_dir():
                shutil.copytree(root / source, site / target)
            else:
                shutil.copy(root / source, site / target)
    for requirement in WHEELS:
        with zipfile.ZipFile(wheel_path(requirement)) as archive:
            archive.extractall(site)
    return site


class OracleError(RuntimeError):
    """The peer's process failed as a whole (not one case: those are observations)."""


def run_oracle(site: Path, cases_module: str, workdir: Path) -> dict[str, Any]:
    """Run every case of ``cases_module`` on the peers' real code; its observations by name."""
    # The cases set the GRIP settings they need: none leaks in from the environment.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("GRIP_") and name != "DJANGO_SETTINGS_MODULE"
    }
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    output = workdir / f"{cases_module}.json"
    command = [sys.executable, "-m", "tests.compat.oracle", cases_module, str(output)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=ORACLE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise OracleError(f"the peer process for {cases_module} failed:\n{result.stderr}")
    observations: dict[str, Any] = json.loads(output.read_text())
    return observations


def main() -> None:
    for sdist in SDISTS:
        print(sdist_path(sdist))
    for requirement in WHEELS:
        print(wheel_path(requirement))


if __name__ == "__main__":
    main()
