#!/usr/bin/env python3
"""DIMSE C-STORE throughput: DCMTK storescu into our gateway and into Orthanc, in the same run, as a ratio.

  .venv/bin/python bench/dimse_bench.py [--reps 3] [--slices 200] [--no-orthanc]

Data: the synthetic CT series of ../shared/tools/peers/gen_data.py (512x512 16-bit slices, 0.53 MB each),
generated once per repetition with a new seed, so every repetition stores new UIDs (never a duplicate).
Both servers start fresh on free loopback ports: ours as `dicomweb dimse` (SQLite + local folder, fsync on,
default ingest worker processes), Orthanc through orthanc-start.sh (fsync on). One storescu run per
repetition sends the whole series on one association (`+sd +r`), with TCP_NODELAY=1 on both sides
(peers README gotcha 3). Figures: wall time of the storescu run; instances/s and MB/s; the median of reps.
Our gateway answers a C-STORE once the instance is durable in its inbox and indexes it in the background, so
"indexed" adds the wait until the inbox is empty and every instance is in the index (for Orthanc, which
answers after indexing, it is the storescu time). "CPU ms/inst": the server's CPU (its processes together,
from /proc) per instance over that time, which decides the figures when other work shares the cores.
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants (our ingest workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue  # ended meanwhile
        total += (int(fields[11]) + int(fields[12])) / tick
        pending += [int(c) for c in children]
    return total


def inbox_of(data: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from dicomweb.archive import Archive
    from dicomweb.settings import load_settings

    archive = Archive.open(load_settings(data_dir=data), migrate=False, ingest_processes=0)
    try:
        return archive.staging_dir / "inbox"
    finally:
        archive.close()


def wait_indexed(inbox: Path, seconds: float = 300) -> None:
    """Until no received instance waits in the inbox (an entry leaves it once the index holds it)."""
    deadline = time.monotonic() + seconds
    while any(p.suffix == ".dcm" for p in inbox.iterdir()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"instances still not indexed after {seconds} s")
        time.sleep(0.005)


def indexed_count(data: Path) -> int:
    from sqlalchemy import func, select

    from dicomweb.archive import Archive
    from dicomweb.index.models import Instance
    from dicomweb.settings import load_settings

    archive = Archive.open(load_settings(data_dir=data), migrate=False, ingest_processes=0)
    instances = Instance.__table__  # type: ignore[attr-defined]
    try:
        with archive.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(instances)).scalar_one())
    finally:
        archive.close()


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
    indexed: dict[str, list[float]] = {"ours": [], "orthanc": []}
    cpu: dict[str, list[float]] = {"ours": [], "orthanc": []}
    pids = {"ours": ours.pid}
    stored = 0
    try:
        wait_echo(ours_port, "DICOMWEB")
        inbox = inbox_of(work / "ours")
        if orthanc:
            subprocess.run([str(PEERS / "orthanc-start.sh")], env=orthanc_env, check=True, capture_output=True)
            wait_echo(int(orthanc_env["ORTHANC_DICOM_PORT"]), "ORTHANC")
            pids["orthanc"] = int((work / "orthanc" / "orthanc.pid").read_text())
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
                cpu_before = cpu_seconds(pids[name])
                started = time.perf_counter()
                elapsed = storescu(port, ae, folder)
                if name == "ours":
                    wait_indexed(inbox)
                    stored += args.slices if rep else 10
                settled = time.perf_counter() - started
                used = cpu_seconds(pids[name]) - cpu_before
                if rep:
                    times[name].append(elapsed)
                    indexed[name].append(settled)
                    cpu[name].append(used)
                    print(f"rep {rep} {name:8s} {elapsed:6.2f} s, indexed after {settled:6.2f} s, "
                          f"server CPU {used:5.2f} s")
                shutil.rmtree(folder)
        if indexed_count(work / "ours") != stored:
            raise RuntimeError(f"the index holds {indexed_count(work / 'ours')} instances, not {stored}")
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
    print(f"{'server':10s} {'seconds':>8s} {'inst/s':>8s} {'MB/s':>7s} {'indexed s':>10s} {'inst/s':>8s} "
          f"{'CPU ms/inst':>12s}")
    for name, values in times.items():
        if values:
            t, i = statistics.median(values), statistics.median(indexed[name])
            c = 1000 * statistics.median(cpu[name]) / args.slices
            print(f"{name:10s} {t:8.2f} {args.slices / t:8.1f} {mb / t:7.1f} {i:10.2f} {args.slices / i:8.1f} "
                  f"{c:12.1f}")
    if times["orthanc"]:
        ratio = statistics.median(times["orthanc"]) / statistics.median(times["ours"])
        ratio_indexed = statistics.median(indexed["orthanc"]) / statistics.median(indexed["ours"])
        print(f"ratio ours/orthanc throughput: {ratio:.2f}x acknowledged, {ratio_indexed:.2f}x indexed "
              "(goal: at least 1.0)")


if __name__ == "__main__":
    main()
