"""QIDO-RS over HTTP, ours next to Orthanc's in the same run, at 10,000 studies (issue 3's peer comparison).

Starts our server (fresh data folder; the embedded SQLite default, or ``--postgres URL``) and an Orthanc with
the DICOMweb plugin (../shared/tools/peers, own ports and home), stores the generator's small studies into
both (``--studies``, default 10,000 studies = about 30,000 instances, "synthetic"), then runs the shared
bench's QIDO phase (study by PatientID, by StudyDate range, by PatientName wildcard, series of a study,
instances of a series ...) against each and prints p50/p95 side by side with the ratio.
Authorization is off on both (Orthanc's too): the figures are the search path itself.

  .venv/bin/python bench/qido_peer_bench.py [--studies 10000] [--postgres URL] [--no-orthanc]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "tools" / "peers"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from qido_bench import fresh_database  # noqa: E402

from tests.conftest import free_port, start_server  # noqa: E402


def bench(url: str, label: str, out: Path, args: argparse.Namespace) -> Path:
    result = out / f"{label}.json"
    subprocess.run(
        [sys.executable, str(PEERS / "dicomweb_bench.py"), "--url", url, "--label", label,
         "--phases", "populate,qido", "--studies", str(args.studies), "--qido-reps", str(args.reps),
         "--slices", "2", "--size", "64", "--max-minutes", "60", "--json", str(result)],
        check=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL: our index in a fresh database")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="qido-peer-bench-")))
    parser.add_argument("--no-orthanc", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with ExitStack() as stack:
        env = {"DICOMWEB_AUTH": "off"}
        if args.postgres:
            env["DICOMWEB_DATABASE_URL"] = stack.enter_context(fresh_database(args.postgres, "qido_peer"))
        server = start_server(args.out / "ours-data", env)
        try:
            results.append(bench(server.url, "ours", args.out, args))
        finally:
            server.stop()
    if not args.no_orthanc:
        orthanc = {**os.environ, "ORTHANC_HTTP_PORT": str(free_port()), "ORTHANC_DICOM_PORT": str(free_port()),
                   "ORTHANC_HOME": str(args.out / "orthanc"), "ORTHANC_FRESH": "1"}
        subprocess.run([str(PEERS / "orthanc-start.sh")], env=orthanc, check=True)
        try:
            results.insert(0, bench(f"http://127.0.0.1:{orthanc['ORTHANC_HTTP_PORT']}/dicom-web", "orthanc",
                                    args.out, args))
        finally:
            subprocess.run([str(PEERS / "orthanc-stop.sh")], env=orthanc, check=False)
    index = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{args.studies} synthetic small studies; our index on {index}; results in {args.out}")
    for metric in ("p50_ms", "p95_ms"):
        subprocess.run([sys.executable, str(PEERS / "compare.py"), *map(str, results), "--metric", metric],
                       check=False)


if __name__ == "__main__":
    main()
