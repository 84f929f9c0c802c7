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

Frames, alternating (``--frames-rounds R``, default 3; 0 leaves it out): with both servers up and holding the
same synthetic series (``--frames-slices``), ``/frames/1`` of random instances (multipart octet-stream,
identity encoding, keep-alive aiohttp clients) for ``--frames-seconds`` per server, client count and round,
the servers taking turns in every round (the one that goes first alternates). On a shared 2-core machine
the load of neighbours drifts over minutes, so turns seconds apart compare the servers fairly where runs
minutes apart do not. Figures: the median over rounds of req/s and of p50/p95 latency, and the ratio.

  .venv/bin/python bench/wado_bench.py [--slices 200] [--size 512] [--out /tmp/wado-bench] [--no-orthanc] [--workers N]
      [--metadata-slices 1000 [--metadata-size 64] [--metadata-reps 30]] [--metadata-only]
      [--frames-rounds 3 [--frames-seconds 3] [--frames-clients 1,8,32] [--frames-slices 50]] [--frames-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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


MP_OCTET = 'multipart/related; type="application/octet-stream"'


def _frames_series(args: argparse.Namespace) -> tuple[str, str, list[str], list[bytes], list[bytes]]:
    """(study, series, SOP UIDs, files, pixel data) of the synthetic CT both servers get for the frames turns."""
    import gen_data

    datasets = list(gen_data.ct_series(args.frames_slices, args.size, seed=args.metadata_seed + 1,
                                       patient_id="SYNTH-FRAMES-0001", patient_name="Synthetic^Frames"))
    return (str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID),
            [str(ds.SOPInstanceUID) for ds in datasets], [gen_data.to_bytes(ds) for ds in datasets],
            [bytes(ds.PixelData) for ds in datasets])


def _check_frames(url: str, label: str, series: tuple[str, str, list[str], list[bytes], list[bytes]]) -> list[str]:
    """Store the series when the server lacks it; check one frame byte for byte; the frame URLs."""
    study, series_uid, sops, blobs, pixels = series
    urls = [f"{url}/studies/{study}/series/{series_uid}/instances/{sop}/frames/1" for sop in sops]
    with httpx.Client(timeout=600, headers={"Accept-Encoding": "identity"}) as client:
        if client.get(urls[0], headers={"Accept": MP_OCTET}).status_code != 200:
            _store(client, url, blobs)
        response = client.get(urls[-1], headers={"Accept": MP_OCTET})
    body, ctype = response.content, response.headers.get("content-type", "")
    boundary = ctype.split("boundary=", 1)[-1].split(";", 1)[0].strip('"')
    frame = body.split(b"\r\n\r\n", 1)[-1].rsplit(b"\r\n--" + boundary.encode(), 1)[0]
    if response.status_code != 200 or frame != pixels[-1]:
        raise SystemExit(f"{label}: /frames/1 answered {response.status_code}, not the stored pixel data")
    return urls


async def _frames_turn(urls: list[str], clients: int, seconds: float, seed: int) -> dict[str, float]:
    import aiohttp

    pick = random.Random(seed)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Accept": MP_OCTET, "Accept-Encoding": "identity"}
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        async def one(timed: bool) -> None:
            started = time.perf_counter()
            async with session.get(pick.choice(urls), headers=headers) as response:
                async for _ in response.content.iter_chunked(1 << 20):
                    pass
                if response.status != 200:
                    raise SystemExit(f"/frames/1 answered {response.status}")
            if timed:
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(one(False) for _ in range(clients)))  # one warm connection per client
        began = time.perf_counter()

        async def client() -> None:
            while time.perf_counter() - began < seconds:
                await one(True)

        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - began
    latencies.sort()
    return {"req_s": len(latencies) / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * latencies[max(0, int(0.95 * len(latencies)) - 1)]}


def frames_rounds(servers: dict[str, str], args: argparse.Namespace, out: Path) -> None:
    series = _frames_series(args)
    urls = {label: _check_frames(url, label, series) for label, url in servers.items()}
    clients = [int(c) for c in args.frames_clients.split(",") if c]
    figures: dict[tuple[str, int], list[dict[str, float]]] = {}
    order = list(servers)
    for round_number in range(args.frames_rounds):
        for count in clients:
            for label in order if round_number % 2 == 0 else order[::-1]:
                figure = asyncio.run(_frames_turn(urls[label], count, args.frames_seconds, round_number))
                figures.setdefault((label, count), []).append(figure)
                print(f"frames round {round_number + 1} {label:8s} {count:3d} clients: {figure['req_s']:7.1f} req/s "
                      f"p50 {figure['p50_ms']:6.2f} ms p95 {figure['p95_ms']:6.2f} ms", flush=True)
    rows = []
    print(f"\n/frames/1, {args.frames_slices} slices {args.size}x{args.size} 16-bit (synthetic), servers taking turns, "
          f"median of {args.frames_rounds} rounds of {args.frames_seconds:g} s")
    print(f"{'clients':>7s} " + " ".join(f"{label + ' req/s':>14s} {'p50':>6s} {'p95':>6s}" for label in order)
          + ("   ratio" if len(order) > 1 else ""))
    for count in clients:
        medians = {label: {k: statistics.median(f[k] for f in figures[(label, count)])
                           for k in ("req_s", "p50_ms", "p95_ms")} for label in order}
        line = f"{count:7d} " + " ".join(f"{m['req_s']:14.1f} {m['p50_ms']:6.2f} {m['p95_ms']:6.2f}"
                                         for m in medians.values())
        if "ours" in medians and "orthanc" in medians:
            line += f"   {medians['ours']['req_s'] / medians['orthanc']['req_s']:.2f}x"
        print(line)
        rows.append({"clients": count, **{label: m for label, m in medians.items()},
                     "rounds": {label: figures[(label, count)] for label in order}})
    (out / "frames-rounds.json").write_text(json.dumps(rows, indent=1))


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
    parser.add_argument("--frames-rounds", type=int, default=3, help="alternating frames turns (0: none)")
    parser.add_argument("--frames-seconds", type=float, default=3.0)
    parser.add_argument("--frames-clients", default="1,8,32")
    parser.add_argument("--frames-slices", type=int, default=50)
    parser.add_argument("--frames-only", action="store_true", help="only the alternating frames turns")
    args = parser.parse_args()
    if args.frames_only:
        args.metadata_only, args.metadata_slices = True, 0
    args.out.mkdir(parents=True, exist_ok=True)
    large = _metadata_series(args) if args.metadata_slices > 0 else None
    results: list[Path] = []
    metadata_results: list[Path] = []
    server = start_server(args.out / "ours-data", {"DICOMWEB_HTTP_WORKERS": str(args.workers)})
    env = {**os.environ, "ORTHANC_HTTP_PORT": str(free_port()), "ORTHANC_DICOM_PORT": str(free_port()),
           "ORTHANC_HOME": str(args.out / "orthanc"), "ORTHANC_FRESH": "1"}
    servers = {"ours": server.url}
    try:
        if not args.no_orthanc:
            subprocess.run([str(PEERS / "orthanc-start.sh")], env=env, check=True)
            servers = {"orthanc": f"http://127.0.0.1:{env['ORTHANC_HTTP_PORT']}/dicom-web", **servers}
        for label, url in servers.items():  # one server at a time: the other sits idle
            if not args.metadata_only:
                results.append(bench(url, label, args.out, args))
            if large is not None:
                metadata_results.append(metadata_bench(url, label, args.out, args, large))
        if args.frames_rounds > 0:
            frames_rounds(servers, args, args.out)
    finally:
        server.stop()
        if not args.no_orthanc:
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
