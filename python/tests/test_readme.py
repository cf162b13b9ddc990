"""The README's recorder quickstart runs as printed and its trace makes the golden's decisions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GOLDEN, REPO, run

pytest.importorskip("torch")


def test_the_readme_recorder_quickstart_runs_and_matches_the_golden(reroute, tmp_path):
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- recorder quickstart[^\n]*-->\n```python\n(.*?)```", text, re.S)
    assert m, "no recorder quickstart block in README.md"
    code = m.group(1)
    assert len(code.strip().splitlines()) < 20
    out = tmp_path / "recorded.h5"
    script = tmp_path / "quickstart.py"
    script.write_text(code.replace("/tmp/recorded.h5", str(out)))
    env = dict(os.environ, PATH=str(Path(reroute).parent) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    d = run(reroute, "diff", str(GOLDEN / "traces/tiny-llama/fastv-release-64.h5"), str(out))
    assert d.returncode == 0, d.stdout[-3000:]
