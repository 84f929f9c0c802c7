#!/usr/bin/env python3
"""STOW-RS ingest: our server next to Orthanc in the same run, and server memory under a huge request.

  .venv/bin/python bench/stow_bench.py [--reps 3] [--rounds 3] [--big-gb 2] [--no-orthanc]
  .venv/bin/python bench/stow_bench.py --rounds 0 --big-gb 2          # the huge request alone

1. Both servers are started fresh on free loopback ports and stay up together (ours: SQLite + local folder,
   fsync on; Orthanc: Debian's package through ../shared/tools/peers/orthanc-start.sh, fsync on). The peers'
   ``dicomweb_bench.py --phases stow`` measures each (the synthetic 200-slice 512x512 CT, re-UID'd every
   repetition, batches of 20, one keep-alive connection), ``--reps`` repetitions per round, in ``--rounds``
   rounds that alternate which server goes first: on a machine shared with other work, load that comes and
   goes then falls on both alike. The summary gives each server's median over all repetitions, the ratio of
   the medians and the median of the per-round ratios; ``compare.py`` prints its table too.
2. ``--big-gb``: one STOW-RS request of that many GB (the synthetic slice, re-UID'd per part, generated
   while sending, so the client holds none of it) into our server; prints instances/s, the web process's
   peak resident memory (VmHWM; the goal: under 300 MB for 2 GB) and the whole server's (web process and
   ingest workers: the largest sum of their resident memory seen while the request ran, sampled every
   0.1 s, and the sum of each one's own peak).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
PEERS = (REPO.parent / "shared" / "tools" / "peers").resolve()
PEERS_PY = Path(os.environ.get("PEERS_VENV", "/tmp/peers-venv")) / "bin" / "python"
STOW_OP = "stow series batch=20"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_ours(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomweb.cli", "serve", "--port", str(port), "--data", str(data),
         "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "DICOMWEB_AUTH": "off"})  # Orthanc runs without authentication too
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


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmHWM") / 1024


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the ingest workers are children of the web process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


class TreeMemory:
    """Samples the resident memory of a process tree in a thread: the largest sum seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_kb = max(self.peak_kb, sum(_status_kb(p, "VmRSS") for p in process_tree(self.pid)))

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
    with TreeMemory(pid) as memory:
        response = httpx.post(f"{url}/studies", content=body(), timeout=3600, headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    seconds = time.perf_counter() - start
    answer = response.json()
    stored = len(answer.get("00081199", {}).get("Value", []))
    failed = len(answer.get("00081198", {}).get("Value", []))
    total_gb = count * len(template) / 1e9
    tree = process_tree(pid)
    print(f"\n## one {total_gb:.2f} GB STOW-RS request into ours ({count} synthetic 512x512 slices)")
    print(f"status {response.status_code}, stored {stored}, failed {failed}, {seconds:.1f} s, "
          f"{count / seconds:.0f} instances/s, {total_gb * 1000 / seconds:.0f} MB/s")
    print(f"web process peak resident memory: {peak_rss_mb(pid):.0f} MB (before the request: {before:.0f} MB)")
    print(f"whole server ({len(tree)} processes): peak resident sum while it ran {memory.peak_kb / 1024:.0f} MB; "
          f"sum of each process's own peak {sum(peak_rss_mb(p) for p in tree):.0f} MB")


def stow_reps(path: Path) -> tuple[str, list[float], dict[str, object]]:
    summary = json.loads(path.read_text())
    row = next(r for r in summary["table_rows"] if r["op"] == STOW_OP)
    return summary["meta"]["label"], [float(r["instances_s"]) for r in row["reps"]], row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per server and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating which server goes first")
    parser.add_argument("--big-gb", type=float, default=0.0, help="also send one request of this many GB")
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    if not PEERS_PY.exists():
        subprocess.run([str(PEERS / "install.sh")], check=True)

    work = Path(tempfile.mkdtemp(prefix="stow-bench-"))
    ours, url = start_ours(work / "ours")
    servers = {"ours": (url, ours.pid)}
    env = {**os.environ, "ORTHANC_HOME": str(work / "orthanc"), "ORTHANC_HTTP_PORT": str(free_port()),
           "ORTHANC_DICOM_PORT": str(free_port()), "ORTHANC_FRESH": "1"}
    results: list[Path] = []
    per_round: dict[str, list[list[float]]] = {}
    try:
        print(f"ours: {url} (pid {ours.pid})", flush=True)
        if not args.no_orthanc:
            subprocess.run([str(PEERS / "orthanc-start.sh")], check=True, env=env, stdout=subprocess.DEVNULL)
            pid = int((work / "orthanc" / "orthanc.pid").read_text())
            servers["orthanc"] = (f"http://127.0.0.1:{env['ORTHANC_HTTP_PORT']}/dicom-web", pid)
            print(f"orthanc: {servers['orthanc'][0]} (pid {pid})", flush=True)
        for round_ in range(args.rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for label in order:
                server_url, pid = servers[label]
                out = work / f"{label}-{round_}.json"
                peer_bench(server_url, label, pid, args.reps, out)
                results.append(out)
                _, reps, _ = stow_reps(out)
                per_round.setdefault(label, []).append(reps)
                print(f"round {round_ + 1} {label:8} {' '.join(f'{r:6.1f}' for r in reps)} inst/s", flush=True)
        if args.big_gb:
            big_request(url, ours.pid, args.big_gb)
    finally:
        ours.terminate()
        ours.wait(30)
        if not args.no_orthanc:
            subprocess.run([str(PEERS / "orthanc-stop.sh")], env=env, stdout=subprocess.DEVNULL)

    if per_round:
        print(f"\n## {STOW_OP}: every timed repetition, {args.rounds} rounds x {args.reps}")
    medians = {}
    for label, rounds in per_round.items():
        every = [r for reps in rounds for r in reps]
        medians[label] = statistics.median(every)
        _, _, row = stow_reps(next(p for p in results if p.name.startswith(label)))
        print(f"{label:8} median {medians[label]:6.1f} inst/s (min {min(every):.1f}, max {max(every):.1f}); "
              f"server peak RSS {row.get('server_peak_rss_mb', '?')} MB")
    if len(medians) == 2:
        ratios = [statistics.median(a) / statistics.median(b)
                  for a, b in zip(per_round["ours"], per_round["orthanc"], strict=True)]
        print(f"ours / orthanc: {medians['ours'] / medians['orthanc']:.2f}x (medians); per round "
              f"{' '.join(f'{r:.2f}x' for r in ratios)}, median {statistics.median(ratios):.2f}x")
    if results:
        subprocess.run([str(PEERS_PY), str(PEERS / "compare.py"), *map(str, results),
                        "--metric", "instances_s", "--metric", "MB_s"], check=False)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
