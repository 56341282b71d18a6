"""Runs a script of ``experiments/`` or ``benchmarks/`` as a user runs it: ``python FOLDER/NAME.py ARGS``
from the repository root, with no ``PYTHONPATH`` (the script finds this checkout's jaxcnn itself)."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_script(folder: str, script: str, *args, timeout: float = 300) -> str:
    """The script's stdout; fails the test with its stderr when it exits with an error."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(ROOT / folder / script), *map(str, args)],
                            capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout
