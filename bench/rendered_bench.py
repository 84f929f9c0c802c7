#!/usr/bin/env python3
"""Rendered frames and thumbnails: latency of our server next to Orthanc's DICOMweb plugin, same run.

  .venv/bin/python bench/rendered_bench.py [--slices 40] [--no-orthanc]

Data: the peers' synthetic CT (512x512, signed 16-bit), generated in memory and stored by STOW-RS (ours) and
POST /instances (Orthanc). Each server is fresh, on loopback, one keep-alive client, no gzip.
Figures (milliseconds, p50/p95 over the slices, image/jpeg at the server's default quality):
  rendered cold    every slice once, nothing rendered before (our header and render caches empty)
  rendered warm    every slice again with a new window each time: decoded and encoded again, process and
                   page cache warm (the honest "warm render" figure)
  rendered cached  the first requests repeated: served from the render cache
  thumbnail first / cached   instance thumbnails (128 px), first and repeated
Goals from issue 5: warm rendered p50 under 15 ms, cached thumbnail under 5 ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PEERS = (REPO.parent / "shared" / "tools" / "peers").resolve()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, what: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def synthetic(slices: int) -> list[bytes]:
    sys.path.insert(0, str(PEERS))
    import gen_data  # type: ignore[import-not-found]

    return [gen_data.to_bytes(ds) for ds in gen_data.ct_series(n=slices)]


def stow(url: str, files: list[bytes]) -> None:
    boundary = "rendered-bench"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f + b"\r\n" for f in files)
    body += f"--{boundary}--\r\n".encode()
    response = httpx.post(f"{url}/studies", content=body, timeout=600, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    response.raise_for_status()


def timed(client: httpx.Client, urls: list[str], params: Callable[[int], dict[str, str]] | None = None,
          accept: str = "image/jpeg") -> list[float]:
    out = []
    for n, url in enumerate(urls):
        start = time.perf_counter()
        # The query is written by hand: Orthanc does not decode %2C, which httpx's params would send for commas.
        query = "&".join(f"{k}={v}" for k, v in params(n).items()) if params else ""
        response = client.get(f"{url}?{query}" if query else url, headers={"Accept": accept})
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")
        out.append(elapsed)
    return out


def figure(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"  {label:<28} p50 {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms   (n={len(values)})"


def instance_urls(url: str, files: list[bytes], suffix: str) -> list[str]:
    import io

    import pydicom

    urls = []
    for f in files:
        ds = pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True)
        urls.append(f"{url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                    f"/instances/{ds.SOPInstanceUID}/{suffix}")
    return urls


def run_ours(files: list[bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="rendered-bench-") as tmp:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "dicomweb.cli", "serve", "--port", str(port), "--data", str(Path(tmp) / "data"),
             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "DICOMWEB_AUTH": "off"})  # Orthanc runs without authentication too
        try:
            root = f"http://127.0.0.1:{port}"
            wait_for(f"{root}/health", "our server")
            url = f"{root}/dicom-web"
            stow(url, files)
            rendered, thumbs = instance_urls(url, files, "rendered"), instance_urls(url, files, "thumbnail")
            with httpx.Client(headers={"Accept-Encoding": "identity"}, timeout=60) as client:
                print("ours (dicomweb, synthetic CT 512x512)")
                print(figure("rendered cold", timed(client, rendered)))
                print(figure("rendered warm (re-render)", timed(client, rendered,
                                                               lambda n: {"window": f"40,{400 + n},linear"})))
                print(figure("rendered cached", timed(client, rendered)))
                print(figure("thumbnail first", timed(client, thumbs)))
                print(figure("thumbnail cached", timed(client, thumbs)))
        finally:
            process.terminate()
            process.wait(timeout=30)


def run_orthanc(files: list[bytes]) -> None:
    home = Path(tempfile.mkdtemp(prefix="orthanc-rendered-bench-"))
    http_port = free_port()
    env = {**os.environ, "ORTHANC_HTTP_PORT": str(http_port), "ORTHANC_DICOM_PORT": str(free_port()),
           "ORTHANC_HOME": str(home), "ORTHANC_FRESH": "1"}
    started = subprocess.run([str(PEERS / "orthanc-start.sh")], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        print(f"orthanc: could not start ({started.stderr.strip()[-300:]})")
        return
    try:
        root = f"http://127.0.0.1:{http_port}"
        wait_for(f"{root}/system", "Orthanc")
        with httpx.Client(headers={"Accept-Encoding": "identity"}, timeout=60) as client:
            for f in files:
                client.post(f"{root}/instances", content=f).raise_for_status()
            rendered = instance_urls(f"{root}/dicom-web", files, "rendered")
            print("orthanc (DICOMweb plugin /rendered, same data)")
            print(figure("rendered cold", timed(client, rendered)))
            print(figure("rendered warm (re-render)", timed(client, rendered,
                                                           lambda n: {"window": f"40,{400 + n},linear"})))
            print(figure("rendered again", timed(client, rendered)))
            thumbs = instance_urls(f"{root}/dicom-web", files, "thumbnail")
            probe = client.get(thumbs[0], headers={"Accept": "image/jpeg"})
            if probe.status_code == 200:
                print(figure("thumbnail", timed(client, thumbs)))
            else:
                print(f"  thumbnail: not offered by this Orthanc (HTTP {probe.status_code})")
    finally:
        subprocess.run([str(PEERS / "orthanc-stop.sh")], env=env, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    files = synthetic(args.slices)
    run_ours(files)
    if not args.no_orthanc:
        run_orthanc(files)


if __name__ == "__main__":
    main()
