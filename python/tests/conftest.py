import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "golden"


@pytest.fixture(scope="session")
def reroute() -> str:
    """The Swift `reroute` binary ($REROUTE, else the repository's debug build); tests that
    compare the two readers skip without it (CI builds it before running pytest)."""
    exe = os.environ.get("REROUTE") or str(REPO / ".build/debug/reroute")
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        if os.environ.get("CI"):
            pytest.fail(f"the reroute binary is needed in CI: {exe}")
        pytest.skip(f"no reroute binary at {exe} (swift build --product reroute)")
    return exe


def run(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def copy_of(tmp_path):
    def make(rel: str, name: str = "t.h5") -> Path:
        dst = tmp_path / name
        shutil.copyfile(GOLDEN / rel, dst)
        return dst
    return make
