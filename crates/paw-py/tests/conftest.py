"""Fixtures shared by the Python tests: a store of the run's own and one compiled program."""

import os
import shutil
from pathlib import Path

import pytest

import paw
from test_paw import EXAMPLES, SMOLLM2, SPEC


@pytest.fixture(scope="session", autouse=True)
def fresh_store(tmp_path_factory):
    """A store of this run's own holding SmolLM2 (hard links), so that the first compile
    really compiles: paw.function, `paw run` and `paw build` all read $PAW_HOME."""
    installed = Path(os.environ["PAW_HOME"]) / "models"
    home = tmp_path_factory.mktemp("paw-home")
    (home / "models").mkdir()
    sha = Path(SMOLLM2).name.split(".")[0]
    for f in installed.iterdir():
        if f.name.startswith(sha):
            try:
                os.link(f, home / "models" / f.name)
            except OSError:  # another file system
                shutil.copyfile(f, home / "models" / f.name)
    os.environ["PAW_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def program(fresh_store):
    stages = []
    compiled = paw.compile(
        SPEC,
        examples=EXAMPLES,
        interpreter=SMOLLM2,
        teacher="none",
        steps=4,
        progress=lambda stage, done, total, message: stages.append((stage, done, total)),
    )
    return compiled, stages
