#!/usr/bin/env python3
"""Tiers: frame latency (p50/p95) and series MB/s from each tier over HTTP, and migration MB/s between tiers.

  .venv/bin/python bench/tiers_bench.py [--slices 100] [--frames 300]

A synthetic CT series (../shared/tools/peers/gen_data.py, 512x512 16-bit) is stored into an archive with three
tiers: ``local`` and ``lab`` (folders) and ``national`` (S3 through s3fs, served by moto's standalone server
on loopback). The series is moved local -> lab -> national -> local; after each move a live ``dicomweb
serve`` answers single-frame WADO-RS requests (one keep-alive connection, random instances) and whole-series
requests. The goal: a frame from the S3 tier within 2x of the local tier's latency.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "tools" / "peers"
sys.path.insert(0, str(REPO))

from dicomweb.archive import Archive  # noqa: E402
from dicomweb.services.migration import MigrationService  # noqa: E402
from dicomweb.settings import load_settings  # noqa: E402

FRAME = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
SERIES = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def write_series(folder: Path, slices: int) -> list[Path]:
    sys.path.insert(0, str(PEERS))
    import gen_data  # type: ignore[import-not-found]

    folder.mkdir(parents=True)
    paths = []
    for i, ds in enumerate(gen_data.ct_series(n=slices)):
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def config_text(work: Path, endpoint: str, bucket: str) -> str:
    return f"""data_dir = "{work / 'data'}"
ingest_processes = 0
migration_drain_seconds = 0
[[tiers]]
name = "local"
url = "{(work / 'local').as_uri()}"
role = "local"
[[tiers]]
name = "lab"
url = "{(work / 'lab').as_uri()}"
role = "laboratory"
[[tiers]]
name = "national"
url = "s3://{bucket}/archive"
role = "external"
options = {{ endpoint_url = "{endpoint}", key = "bench", secret = "bench", region = "us-east-1" }}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--frames", type=int, default=300, help="single-frame requests per tier")
    parser.add_argument("--series-reps", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tiers-bench-"))
    s3_port, web_port = free_port(), free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = None
    try:
        endpoint = f"http://127.0.0.1:{s3_port}"
        wait_http(endpoint)
        httpx.put(f"{endpoint}/bench").raise_for_status()
        config = work / "dicomweb.toml"
        config.write_text(config_text(work, endpoint, "bench"))
        os.environ["DICOMWEB_CONFIG"] = str(config)
        settings = load_settings()
        archive = Archive.open(settings)
        paths = write_series(work / "input", args.slices)
        for path in paths:
            assert archive.ingest.store(archive.stage_file(path)).outcome == "stored"
        instances = archive.retrieve.instances(_study(archive))
        study, series = instances[0].study_instance_uid, instances[0].series_instance_uid
        total = sum(i.size for i in instances)
        print(f"synthetic CT series: {len(instances)} slices 512x512, {total / 1e6:.1f} MB")

        server = subprocess.Popen(
            [sys.executable, "-m", "dicomweb.cli", "serve", "--port", str(web_port), "--log-level", "warning"],
            env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{web_port}/dicom-web"
        wait_http(f"http://127.0.0.1:{web_port}/health")
        mover = MigrationService(archive.engine, archive.tiers, drain_seconds=0)
        rng = random.Random(1)
        results: dict[str, tuple[float, float, float]] = {}
        previous = "local"
        for tier in ("local", "lab", "national", "local"):
            if tier != previous:
                started = time.perf_counter()
                report = mover.move_study(study, tier)
                elapsed = time.perf_counter() - started
                print(f"migration {previous} -> {tier}: {report.instances} instances, {report.bytes / 1e6:.1f} MB in "
                      f"{elapsed:.2f} s = {report.bytes / 1e6 / elapsed:.1f} MB/s")
                previous = tier
            if tier in results:
                continue
            with httpx.Client(timeout=60) as client:
                for inst in instances[:5]:  # warm the connection and the server
                    client.get(f"{base}/studies/{study}/series/{series}/instances/{inst.sop_instance_uid}/frames/1",
                               headers=FRAME).raise_for_status()
                latencies = []
                for _ in range(args.frames):
                    inst = rng.choice(instances)
                    url = f"{base}/studies/{study}/series/{series}/instances/{inst.sop_instance_uid}/frames/1"
                    started = time.perf_counter()
                    response = client.get(url, headers=FRAME)
                    latencies.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
                rates = []
                for _ in range(args.series_reps):
                    started = time.perf_counter()
                    size = 0
                    with client.stream("GET", f"{base}/studies/{study}/series/{series}", headers=SERIES) as r:
                        assert r.status_code == 200
                        for chunk in r.iter_raw():
                            size += len(chunk)
                    rates.append(size / 1e6 / (time.perf_counter() - started))
            results[tier] = (statistics.median(latencies), percentile(latencies, 0.95), statistics.median(rates))
            print(f"tier {tier:9s} frame p50 {results[tier][0]:6.2f} ms  p95 {results[tier][1]:6.2f} ms  "
                  f"series {results[tier][2]:7.1f} MB/s")
        ratio = results["national"][0] / results["local"][0]
        print(f"S3 frame p50 / local frame p50 = {ratio:.2f}x (goal: within 2x)")
        archive.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def _study(archive: Archive) -> str:
    from sqlalchemy import select

    from dicomweb.index.models import Study

    with archive.engine.connect() as conn:
        return str(conn.execute(select(Study.__table__.c.study_instance_uid)).scalar_one())  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
