"""The benchmark environments: the peers in .venv, and Oban for Python (Python >= 3.12) in its
own venv, .venv/py312-oban, built from a python3.12+ found on PATH or under pyenv."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._common import ROOT, log

VENV = ROOT / ".venv" / "py312-oban"
REQUIREMENTS = ROOT / "benchmarks" / "requirements.txt"
OBAN_REQUIREMENTS = ROOT / "benchmarks" / "requirements-oban.txt"
PEER_MODULES = ("blinker", "pyee", "asyncpg", "pgqueuer", "procrastinate", "chancy")


def ensure_peers() -> None:
    """Install benchmarks/requirements.txt into this interpreter's env if a peer is missing."""
    missing = [m for m in PEER_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        return
    log(f"installing benchmark requirements (missing: {', '.join(missing)})")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
    )
    importlib.invalidate_caches()


def _find_python312() -> str | None:
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 13)]
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    for minor in (12, 13):
        candidates.extend(sorted(glob.glob(f"{root}/versions/3.{minor}*/bin/python3.{minor}")))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    return None


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(*, verbose: bool = False) -> tuple[Path | None, str]:
    """The Oban venv's interpreter (creating it if needed), or None and the reason why not."""
    py = python()
    if py.exists():
        check = subprocess.run([str(py), "-c", "import oban"], capture_output=True)
        if check.returncode == 0:
            return py, ""
    base = _find_python312()
    if base is None:
        return None, "no Python >= 3.12 on this machine (Oban for Python requires it)"
    try:
        if not py.exists():
            if verbose:
                log(f"creating {VENV.relative_to(ROOT)} with {base}")
            subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        if verbose:
            log(f"installing {OBAN_REQUIREMENTS.name} into {VENV.relative_to(ROOT)}")
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "-r", str(OBAN_REQUIREMENTS)], check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        return None, f"could not build the Python 3.12 venv for Oban: {exc}"
    return py, ""
