"""WADO-RS figures, ours next to Orthanc's in the same run, on the same machine.

Starts our server (fresh data folder, SQLite) and an Orthanc with the DICOMweb plugin (../shared/tools/peers,
own ports and home), then drives ../shared/tools/peers/dicomweb_bench.py against both (phases populate, wado,
conc: whole-series retrieval MB/s, series /metadata latency, /frames/1 latency p50/p95 with 1, 8 and 32
clients) and folds the JSON results with compare.py. The reference series is the generator's synthetic CT
(label figures "synthetic").

  .venv/bin/python bench/wado_bench.py [--slices 200] [--size 512] [--out /tmp/wado-bench] [--no-orthanc]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "tools" / "peers"
sys.path.insert(0, str(REPO))

from tests.conftest import free_port, start_server  # noqa: E402


def bench(url: str, label: str, out: Path, args: argparse.Namespace) -> Path:
    result = out / f"{label}.json"
    subprocess.run(
        [sys.executable, str(PEERS / "dicomweb_bench.py"), "--url", url, "--label", label,
         "--phases", "populate,wado,conc", "--slices", str(args.slices), "--size", str(args.size),
         "--studies", "20", "--concurrency", "1,8,32", "--json", str(result)],
        check=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="wado-bench-")))
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    server = start_server(args.out / "ours-data")
    try:
        results.append(bench(server.url, "ours", args.out, args))
    finally:
        server.stop()
    if not args.no_orthanc:
        env = {**os.environ, "ORTHANC_HTTP_PORT": str(free_port()), "ORTHANC_DICOM_PORT": str(free_port()),
               "ORTHANC_HOME": str(args.out / "orthanc"), "ORTHANC_FRESH": "1"}
        subprocess.run([str(PEERS / "orthanc-start.sh")], env=env, check=True)
        try:
            results.insert(0, bench(f"http://127.0.0.1:{env['ORTHANC_HTTP_PORT']}/dicom-web", "orthanc", args.out,
                                    args))
        finally:
            subprocess.run([str(PEERS / "orthanc-stop.sh")], env=env, check=False)
    print(f"synthetic CT, {args.slices} slices {args.size}x{args.size} 16-bit; results in {args.out}")
    for metric in ("MB_s", "p50_ms", "p95_ms", "req_s"):
        subprocess.run([sys.executable, str(PEERS / "compare.py"), *map(str, results), "--metric", metric],
                       check=False)


if __name__ == "__main__":
    main()
