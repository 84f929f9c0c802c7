"""WADO-RS figures, ours next to Orthanc's in the same run, on the same machine.

Starts our server (fresh data folder, SQLite) and an Orthanc with the DICOMweb plugin (../shared/tools/peers,
own ports and home), then drives ../shared/tools/peers/dicomweb_bench.py against both (phases populate, wado,
conc: whole-series retrieval MB/s, series /metadata latency, /frames/1 latency p50/p95 with 1, 8 and 32
clients) and folds the JSON results with compare.py. The reference series is the generator's synthetic CT
(label figures "synthetic").

With ``--metadata-slices N`` (e.g. 1000) each server also gets a synthetic series of N small slices
(``--metadata-size`` pixels square), stored once, and the warm series /metadata (DICOM JSON, Accept-Encoding
identity, one keep-alive connection, after warm-up requests) is timed: p50/p95/min over ``--metadata-reps``
requests, each answer checked to hold N instances.

  .venv/bin/python bench/wado_bench.py [--slices 200] [--size 512] [--out /tmp/wado-bench] [--no-orthanc] [--workers N]
      [--metadata-slices 1000 [--metadata-size 64] [--metadata-reps 30]] [--metadata-only]
"""

from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(1, str(PEERS))

from tests.conftest import free_port, start_server  # noqa: E402

DICOM_JSON = "application/dicom+json"


def bench(url: str, label: str, out: Path, args: argparse.Namespace) -> Path:
    result = out / f"{label}.json"
    subprocess.run(
        [sys.executable, str(PEERS / "dicomweb_bench.py"), "--url", url, "--label", label,
         "--phases", "populate,wado,conc", "--slices", str(args.slices), "--size", str(args.size),
         "--studies", "20", "--concurrency", "1,8,32", "--json", str(result)],
        check=True,
    )
    return result


def _metadata_series(args: argparse.Namespace) -> tuple[str, str, list[bytes]]:
    import gen_data  # the peers' generator: deterministic UIDs, so both servers get the same series

    datasets = list(gen_data.ct_series(args.metadata_slices, args.metadata_size, seed=args.metadata_seed,
                                       patient_id="SYNTH-META-0001", patient_name="Synthetic^Metadata"))
    return (str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID),
            [gen_data.to_bytes(ds) for ds in datasets])


def _store(client: httpx.Client, url: str, blobs: list[bytes], batch: int = 50) -> None:
    for start in range(0, len(blobs), batch):
        boundary = f"meta-bench-{start}"
        body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + blob + b"\r\n"
                        for blob in blobs[start:start + batch]) + b"--" + boundary.encode() + b"--\r\n"
        response = client.post(f"{url}/studies", content=body, headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}', "Accept": DICOM_JSON})
        if response.status_code not in (200, 202):
            raise SystemExit(f"metadata series: STOW answered {response.status_code}: {response.text[:300]}")


def metadata_bench(url: str, label: str, out: Path, args: argparse.Namespace,
                   series: tuple[str, str, list[bytes]]) -> Path:
    """Warm series /metadata of a large series; the result file has compare.py's layout."""
    study, series_uid, blobs = series
    client = httpx.Client(timeout=600, headers={"Accept-Encoding": "identity"})
    target = f"{url}/studies/{study}/series/{series_uid}/metadata"
    probe = client.get(target, headers={"Accept": DICOM_JSON})
    if probe.status_code != 200 or len(probe.json()) != len(blobs):
        _store(client, url, blobs)
    latencies: list[float] = []
    size = 0
    first_ms = 0.0
    for rep in range(-3, args.metadata_reps):  # 3 warm-up requests: the first builds what later ones reuse
        started = time.perf_counter()
        response = client.get(target, headers={"Accept": DICOM_JSON})
        body = response.content
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"{label}: series /metadata answered {response.status_code}")
        if rep == -3:
            first_ms = round(1000 * elapsed, 2)  # cold unless the series was stored by an earlier run
        if rep < 0:
            count = len(json.loads(body))
            if count != len(blobs):
                raise SystemExit(f"{label}: series /metadata has {count} instances, expected {len(blobs)}")
            continue
        latencies.append(elapsed)
        size = len(body)
    latencies.sort()
    row = {"op": f"wado series /metadata, {len(blobs)} instances (warm)", "group": "metadata", "conc": 1,
           "n": len(latencies), "p50_ms": round(1000 * statistics.median(latencies), 2),
           "p95_ms": round(1000 * latencies[max(0, int(0.95 * len(latencies)) - 1)], 2),
           "min_ms": round(1000 * latencies[0], 2), "first_ms": first_ms, "bytes_per_req": size,
           "MB_s": round(size / statistics.median(latencies) / 1e6, 1)}
    print(f"{label}: {row['op']}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, min {row['min_ms']} ms, "
          f"first request {first_ms} ms, {size} bytes")
    result = out / f"{label}-metadata.json"
    result.write_text(json.dumps({"meta": {"label": label, "url": url}, "table_rows": [row]}, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="wado-bench-")))
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="our HTTP server processes (serve --workers)")
    parser.add_argument("--metadata-slices", type=int, default=0, help="also time /metadata of a series this large")
    parser.add_argument("--metadata-size", type=int, default=64, help="rows and columns of those slices")
    parser.add_argument("--metadata-reps", type=int, default=30)
    parser.add_argument("--metadata-seed", type=int, default=11)
    parser.add_argument("--metadata-only", action="store_true", help="skip the peers' bench phases")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    large = _metadata_series(args) if args.metadata_slices > 0 else None
    results: list[Path] = []
    metadata_results: list[Path] = []
    server = start_server(args.out / "ours-data", {"DICOMWEB_HTTP_WORKERS": str(args.workers)})
    try:
        if not args.metadata_only:
            results.append(bench(server.url, "ours", args.out, args))
        if large is not None:
            metadata_results.append(metadata_bench(server.url, "ours", args.out, args, large))
    finally:
        server.stop()
    if not args.no_orthanc:
        env = {**os.environ, "ORTHANC_HTTP_PORT": str(free_port()), "ORTHANC_DICOM_PORT": str(free_port()),
               "ORTHANC_HOME": str(args.out / "orthanc"), "ORTHANC_FRESH": "1"}
        subprocess.run([str(PEERS / "orthanc-start.sh")], env=env, check=True)
        orthanc = f"http://127.0.0.1:{env['ORTHANC_HTTP_PORT']}/dicom-web"
        try:
            if not args.metadata_only:
                results.insert(0, bench(orthanc, "orthanc", args.out, args))
            if large is not None:
                metadata_results.insert(0, metadata_bench(orthanc, "orthanc", args.out, args, large))
        finally:
            subprocess.run([str(PEERS / "orthanc-stop.sh")], env=env, check=False)
    if results:
        print(f"synthetic CT, {args.slices} slices {args.size}x{args.size} 16-bit; results in {args.out}")
        for metric in ("MB_s", "p50_ms", "p95_ms", "req_s"):
            subprocess.run([sys.executable, str(PEERS / "compare.py"), *map(str, results), "--metric", metric],
                           check=False)
    if metadata_results:
        print(f"\nseries /metadata, {args.metadata_slices} slices {args.metadata_size}x{args.metadata_size}; "
              f"results in {args.out}")
        for metric in ("p50_ms", "p95_ms"):
            subprocess.run([sys.executable, str(PEERS / "compare.py"), *map(str, metadata_results),
                            "--metric", metric], check=False)


if __name__ == "__main__":
    main()
