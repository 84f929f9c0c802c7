#!/usr/bin/env python3
"""STOW-RS ingest: our server next to Orthanc in the same run, and server memory under a huge request.

  .venv/bin/python bench/stow_bench.py [--reps 5] [--big-gb 2] [--no-orthanc]

1. Both servers are started fresh on free loopback ports (ours: SQLite + local folder, fsync on;
   Orthanc: Debian's package through ../shared/tools/peers/orthanc-start.sh, fsync on). The peers'
   ``dicomweb_bench.py --phases stow`` measures each (the synthetic 200-slice 512x512 CT, re-UID'd every
   repetition, batches of 20, one keep-alive connection), and ``compare.py`` prints the ratio.
2. ``--big-gb``: one STOW-RS request of that many GB (the synthetic slice, re-UID'd per part, generated
   while sending, so the client holds none of it) into our server; prints instances/s and the server's
   peak resident memory (VmHWM). The goal: under 300 MB for a 2 GB request.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
PEERS = (REPO.parent / "shared" / "tools" / "peers").resolve()
PEERS_PY = Path(os.environ.get("PEERS_VENV", "/tmp/peers-venv")) / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ours(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomweb.cli", "serve", "--port", str(port), "--data", str(data),
         "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    root = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                return process, f"{root}/dicom-web"
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("our server did not start")


def peer_bench(url: str, label: str, pid: int, reps: int, out: Path) -> None:
    subprocess.run(
        [str(PEERS_PY), str(PEERS / "dicomweb_bench.py"), "--url", url, "--label", label, "--phases", "stow",
         "--reps", str(reps), "--server-pid", str(pid), "--json", str(out)],
        check=True, stdout=subprocess.DEVNULL)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_slice() -> bytes:
    sys.path.insert(0, str(PEERS))
    import gen_data  # type: ignore[import-not-found]

    ds = next(iter(gen_data.ct_series(n=1)))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def big_request(url: str, pid: int, gigabytes: float) -> None:
    template = synthetic_slice()
    ds = pydicom.dcmread(io.BytesIO(template), stop_before_pixels=True)
    old = ds.SOPInstanceUID.encode()
    study_old = ds.StudyInstanceUID.encode()
    study_new = generate_uid().encode()[: len(study_old)].ljust(len(study_old), b"1")
    count = int(gigabytes * 1e9 // len(template))
    boundary = "bench-big-request"
    prefix = "1.2.826.0.1.3680043.10.1." + str(int(time.time()))

    def body() -> Iterator[bytes]:
        for i in range(count):
            # Same length as the original UID, so no length field changes: a valid, distinct instance.
            new = f"{prefix}.{i}".encode()[: len(old)].ljust(len(old), b"0")
            new = new[:-1] + b"1" if new.endswith(b".") else new
            part = template.replace(old, new).replace(study_old, study_new)
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    before = peak_rss_mb(pid)
    start = time.perf_counter()
    response = httpx.post(f"{url}/studies", content=body(), timeout=3600,
                          headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    seconds = time.perf_counter() - start
    answer = response.json()
    stored = len(answer.get("00081199", {}).get("Value", []))
    failed = len(answer.get("00081198", {}).get("Value", []))
    total_gb = count * len(template) / 1e9
    print(f"\n## one {total_gb:.2f} GB STOW-RS request into ours ({count} synthetic 512x512 slices)")
    print(f"status {response.status_code}, stored {stored}, failed {failed}, {seconds:.1f} s, "
          f"{count / seconds:.0f} instances/s, {total_gb * 1000 / seconds:.0f} MB/s")
    print(f"server peak resident memory: {peak_rss_mb(pid):.0f} MB (before the request: {before:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--big-gb", type=float, default=0.0, help="also send one request of this many GB")
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    if not PEERS_PY.exists():
        subprocess.run([str(PEERS / "install.sh")], check=True)

    work = Path(tempfile.mkdtemp(prefix="stow-bench-"))
    results = []
    ours, url = start_ours(work / "ours")
    try:
        print(f"ours: {url} (pid {ours.pid})", flush=True)
        peer_bench(url, "ours", ours.pid, args.reps, work / "ours.json")
        results.append(work / "ours.json")
        if args.big_gb:
            big_request(url, ours.pid, args.big_gb)
    finally:
        ours.terminate()
        ours.wait(30)

    if not args.no_orthanc:
        home = work / "orthanc"
        env = {**os.environ, "ORTHANC_HOME": str(home), "ORTHANC_HTTP_PORT": str(free_port()),
               "ORTHANC_DICOM_PORT": str(free_port()), "ORTHANC_FRESH": "1"}
        subprocess.run([str(PEERS / "orthanc-start.sh")], check=True, env=env, stdout=subprocess.DEVNULL)
        try:
            pid = int((home / "orthanc.pid").read_text())
            orthanc_url = f"http://127.0.0.1:{env['ORTHANC_HTTP_PORT']}/dicom-web"
            print(f"orthanc: {orthanc_url} (pid {pid})", flush=True)
            peer_bench(orthanc_url, "orthanc", pid, args.reps, work / "orthanc.json")
            results.insert(0, work / "orthanc.json")
        finally:
            subprocess.run([str(PEERS / "orthanc-stop.sh")], env=env, stdout=subprocess.DEVNULL)

    for path in results:
        summary = json.loads(path.read_text())
        for row in summary["table_rows"]:
            if row["op"].startswith("stow"):
                print(f"{summary['meta']['label']:8} {row['op']:28} {row.get('instances_s', 0):7.1f} inst/s "
                      f"{row.get('MB_s', 0):7.1f} MB/s  server peak RSS {row.get('server_peak_rss_mb', '?')} MB")
    subprocess.run([str(PEERS_PY), str(PEERS / "compare.py"), *map(str, results),
                    "--metric", "instances_s", "--metric", "MB_s"], check=False)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
