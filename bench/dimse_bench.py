#!/usr/bin/env python3
"""DIMSE C-STORE throughput: DCMTK storescu into our gateway and into Orthanc, in the same run, as a ratio.

  .venv/bin/python bench/dimse_bench.py [--reps 3] [--slices 200] [--no-orthanc]

Data: the synthetic CT series of ../shared/tools/peers/gen_data.py (512x512 16-bit slices, 0.53 MB each),
generated once per repetition with a new seed, so every repetition stores new UIDs (never a duplicate).
Both servers start fresh on free loopback ports: ours as `dicomweb dimse` (SQLite + local folder, fsync on,
default ingest worker processes), Orthanc through orthanc-start.sh (fsync on). One storescu run per
repetition sends the whole series on one association (`+sd +r`), with TCP_NODELAY=1 on both sides
(peers README gotcha 3). Figures: wall time of the storescu run; instances/s and MB/s; the median of reps.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "tools" / "peers"
ENV = {**os.environ, "TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_echo(port: int, ae: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if subprocess.run(["echoscu", "-aec", ae, "127.0.0.1", str(port)], env=ENV,
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"{ae} on port {port} did not answer C-ECHO")


def storescu(port: int, ae: str, folder: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run(["storescu", "-aet", "BENCH", "-aec", ae, "+sd", "+r", "127.0.0.1", str(port),
                             str(folder)], env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"storescu into {ae} failed: {result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    for tool in ("storescu", "echoscu"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install dcmtk")
    orthanc = not args.no_orthanc and Path("/usr/sbin/Orthanc").exists()
    work = Path(tempfile.mkdtemp(prefix="dimse-bench-"))
    ours_port = free_port()
    ours = subprocess.Popen([sys.executable, "-m", "dicomweb.cli", "dimse", "--data", str(work / "ours"),
                             "--port", str(ours_port), "--log-level", "warning"], cwd=REPO, env=ENV,
                            stdout=open(work / "ours.log", "wb"), stderr=subprocess.STDOUT)
    orthanc_env = {**ENV, "ORTHANC_HTTP_PORT": str(free_port()), "ORTHANC_DICOM_PORT": str(free_port()),
                   "ORTHANC_HOME": str(work / "orthanc"), "ORTHANC_FRESH": "1"}
    times: dict[str, list[float]] = {"ours": [], "orthanc": []}
    try:
        wait_echo(ours_port, "DICOMWEB")
        if orthanc:
            subprocess.run([str(PEERS / "orthanc-start.sh")], env=orthanc_env, check=True, capture_output=True)
            wait_echo(int(orthanc_env["ORTHANC_DICOM_PORT"]), "ORTHANC")
        for rep in range(args.reps + 1):  # the first is a warm-up
            targets = [("ours", ours_port, "DICOMWEB")]
            if orthanc:
                targets.append(("orthanc", int(orthanc_env["ORTHANC_DICOM_PORT"]), "ORTHANC"))
            if rep % 2:
                targets.reverse()  # neither server always goes first
            for name, port, ae in targets:
                folder = work / f"{name}-{rep}"
                subprocess.run([sys.executable, str(PEERS / "gen_data.py"), "ct", "--out", str(folder),
                                "--slices", str(args.slices if rep else 10), "--seed", str(1000 + rep)],
                               check=True, capture_output=True)
                elapsed = storescu(port, ae, folder)
                if rep:
                    times[name].append(elapsed)
                    print(f"rep {rep} {name:8s} {elapsed:6.2f} s")
                shutil.rmtree(folder)
    finally:
        ours.terminate()
        ours.wait(timeout=30)
        if orthanc:
            subprocess.run([str(PEERS / "orthanc-stop.sh")], env={**orthanc_env, "ORTHANC_WIPE": "1"},
                           capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    mb = args.slices * 512 * 512 * 2 / 1e6
    print(f"\nstorescu, synthetic CT series: {args.slices} instances, {mb:.0f} MB of pixel data, "
          f"median of {args.reps} reps, one association, TCP_NODELAY=1")
    print(f"{'server':10s} {'seconds':>8s} {'inst/s':>8s} {'MB/s':>7s}")
    for name, values in times.items():
        if values:
            t = statistics.median(values)
            print(f"{name:10s} {t:8.2f} {args.slices / t:8.1f} {mb / t:7.1f}")
    if times["orthanc"]:
        ratio = statistics.median(times["orthanc"]) / statistics.median(times["ours"])
        print(f"ratio ours/orthanc throughput: {ratio:.2f}x (goal: at least 1.0)")


if __name__ == "__main__":
    main()
