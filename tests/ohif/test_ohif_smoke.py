"""The real OHIF viewer (npm @ohif/app 3.13.2) in headless Chromium opens the CT study from the shared data
on a live server and renders it (../shared/tools/ohif/run-smoke.sh, proxy mode: same origin).

The tools folder is read-only and npm needs a writable node_modules, so the harness is copied once into a
cache folder (``DICOMWEB_OHIF_HARNESS``, default ``~/.cache/dicomweb-tests/ohif-harness``) and installed
there. Skips, with the reason, when Chromium, node/npm, the harness or the viewer package cannot be had.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, LiveServer, free_port
from tests.core.test_stow_roundtrip import store

TOOLS = Path(os.environ.get("DICOMWEB_OHIF_TOOLS", REPO.parent / "shared" / "tools" / "ohif"))
HARNESS = Path(os.environ.get("DICOMWEB_OHIF_HARNESS", Path.home() / ".cache" / "dicomweb-tests" / "ohif-harness"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CT = "pydicom-test-files/CT_small.dcm"
CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def _harness() -> Path:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node and npm are needed for the OHIF harness")
    if not (TOOLS / "run-smoke.sh").exists():
        pytest.skip(f"the OHIF harness is not at {TOOLS}")
    if not (HARNESS / "node_modules" / "playwright-core").exists():
        shutil.rmtree(HARNESS, ignore_errors=True)
        shutil.copytree(TOOLS, HARNESS)
        for path in [HARNESS, *HARNESS.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        npm = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=HARNESS, capture_output=True,
                             text=True, timeout=300)
        if npm.returncode != 0:
            pytest.skip(f"npm install of the OHIF harness failed: {npm.stderr[-500:]}")
    fetch = subprocess.run([str(HARNESS / "fetch-ohif.sh")], capture_output=True, text=True, timeout=600)
    if fetch.returncode != 0:
        pytest.skip(f"the OHIF viewer package cannot be had: {fetch.stderr[-500:]}")
    return HARNESS


def test_ohif_renders_the_ct_study(server: LiveServer, shared_data: Path, tmp_path: Path) -> None:
    harness = _harness()
    assert store(server, [(shared_data / CT).read_bytes()]).status_code == 200
    out = tmp_path / "ohif"
    run = subprocess.run(
        [str(harness / "run-smoke.sh"), "--dicomweb", server.url, "--study", CT_STUDY, "--out", str(out),
         "--port", str(free_port()), "--timeout", "120", "--strict"],
        capture_output=True, text=True, timeout=400,
    )
    result = (out / "result.json").read_text() if (out / "result.json").exists() else "{}"
    assert run.returncode == 0, f"OHIF did not render: {run.stdout[-3000:]}\n{run.stderr[-2000:]}\n{result[:2000]}"
    requests = [json.loads(line) for line in (out / "proxy-requests.jsonl").read_text().splitlines() if line]
    frames = [r for r in requests if "/frames/" in r["url"]]
    assert frames and all(r["status"] == 200 for r in frames)
    assert all(r["status"] < 400 for r in requests), [r for r in requests if r["status"] >= 400]
