"""QIDO search latency on PostgreSQL over a seeded index (generated rows, bulk COPY; "synthetic" figures).

    .venv/bin/python bench/qido_bench.py --studies 100000        # 100k studies, 1M instances (default shape)
    .venv/bin/python bench/qido_bench.py --studies 10000 --runs 100

Each search is one ``services.query.search`` call (the SQL query plus building the DICOM JSON), timed in-process;
p50/p95 over ``--runs`` random parameter draws. The database is created fresh and dropped afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa

from dicomweb.index import db
from dicomweb.services.query import Query, parse_key, pn_search_columns, search

FAMILY = ["Smith", "Jones", "Müller", "Garcia", "Nguyen", "Kowalski", "Tanaka", "Silva", "Okafor", "Larsen"]
GIVEN = ["Ann", "John", "Maria", "Wei", "Olga", "Ravi", "Yuki", "Pedro", "Ines", "Tom"]
MODALITIES = ["CT", "MR", "US", "CR", "DX", "MG", "PT", "NM"]
NOW = datetime.now(UTC).isoformat()


def _copy(conn: sa.Connection, table: str, columns: list[str], rows: Iterator[tuple[object, ...]]) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for i, row in enumerate(rows):
            buffer.write("\t".join("\\N" if v is None else str(v).replace("\\", "\\\\") for v in row) + "\n")
            if i % 20000 == 19999:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def seed(engine: sa.Engine, studies: int, series_per_study: int, instances_per_series: int, rng: random.Random
         ) -> dict[str, list[str]]:
    patients = max(1, studies // 2)
    names = [f"{rng.choice(FAMILY)}{rng.randrange(1000)}^{rng.choice(GIVEN)}" for _ in range(patients)]
    dates = [f"{rng.randrange(2010, 2025)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}" for _ in range(studies)]
    sample: dict[str, list[str]] = {"patient_id": [], "name": [], "study": [], "series": []}
    with engine.begin() as conn:
        _copy(conn, "patient", ["id", "patient_key", "patient_id", "issuer_of_patient_id", "patient_name",
                                "patient_birth_date", "patient_sex", "created_at", "patient_name_alphabetic",
                                "patient_name_ideographic", "patient_name_phonetic"],
              ((p + 1, f"|PID{p}", f"PID{p}", "", names[p], "19700101", "F", NOW,
                *pn_search_columns("patient_name", names[p]).values()) for p in range(patients)))
        _copy(conn, "study", ["id", "study_instance_uid", "patient_fk", "study_date", "study_time",
                              "accession_number", "study_id", "study_description", "referring_physician_name",
                              "institution_name", "created_at", "updated_at", "referring_physician_alphabetic",
                              "referring_physician_ideographic", "referring_physician_phonetic"],
              ((s + 1, f"2.25.1{s}", s % patients + 1, dates[s], "101010", f"ACC{s}", str(s), "Bench study",
                "Ref^Doc", "Bench", NOW, NOW, "ref^doc", "", "") for s in range(studies)))
        total_series = studies * series_per_study
        _copy(conn, "series", ["id", "series_instance_uid", "study_fk", "modality", "series_number",
                               "series_description", "body_part_examined", "created_at", "updated_at",
                               "performed_procedure_step_start_date", "performed_procedure_step_start_time"],
              ((r + 1, f"2.25.2{r}", r // series_per_study + 1, MODALITIES[(r * 7 + r // 3) % len(MODALITIES)],
                r % series_per_study + 1, "Bench series", "HEAD", NOW, NOW, "", "") for r in range(total_series)))

        def instances() -> Iterator[tuple[object, ...]]:
            for i in range(total_series * instances_per_series):
                series = i // instances_per_series
                metadata = json.dumps({"00080018": {"vr": "UI", "Value": [f"2.25.3{i}"]},
                                       "00200013": {"vr": "IS", "Value": [i % instances_per_series + 1]}})
                yield (i + 1, f"2.25.3{i}", series + 1, "1.2.840.10008.5.1.4.1.1.2", i % instances_per_series + 1,
                       "1.2.840.10008.1.2.1", 1, 512, 512, 16, "local", f"k/{i}", 524288, "0" * 64, "OW", "f",
                       metadata, NOW)

        _copy(conn, "instance", ["id", "sop_instance_uid", "series_fk", "sop_class_uid", "instance_number",
                                 "transfer_syntax_uid", "number_of_frames", "rows", "columns", "bits_allocated",
                                 "tier", "storage_key", "size", "sha256", "pixel_vr", "encapsulated",
                                 "metadata_json", "created_at"], instances())
        for table in ("patient", "study", "series", "instance"):
            conn.execute(sa.text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))
    for _ in range(500):
        p = rng.randrange(patients)
        s = rng.randrange(studies)
        sample["patient_id"].append(f"PID{p}")
        sample["name"].append(names[p].split("^")[0][:5] + "*")
        sample["study"].append(f"2.25.1{s}")
        sample["series"].append(f"{f'2.25.1{s}'}|2.25.2{s * series_per_study}")
    return sample


@contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``server_url`` for one run (its URL), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def kept_database(server_url: str, name: str) -> Iterator[tuple[str, dict[str, list[str]] | None]]:
    """Database ``name`` on ``server_url`` (its URL), created when missing and kept afterwards, with the sample
    its finished seeding recorded (None: not seeded yet): benches that iterate on the queries seed once."""
    admin = sa.create_engine(server_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first() is None:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = f"{server_url.rsplit('/', 1)[0]}/{name}"
    probe = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with probe.connect() as conn:
            sample = None
            if conn.execute(sa.text("SELECT to_regclass('bench_seeded')")).scalar() is not None:
                sample = json.loads(conn.execute(sa.text("SELECT sample FROM bench_seeded")).scalar_one())
    finally:
        probe.dispose()
    yield url, sample


def mark_seeded(engine: sa.Engine, sample: dict[str, list[str]]) -> None:
    """Record in a kept database that its seeding finished, with its sample (an interrupted one is redone)."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE bench_seeded (sample text NOT NULL)"))
        conn.execute(sa.text("INSERT INTO bench_seeded VALUES (:s)"), {"s": json.dumps(sample)})


def _timed(run: Callable[[], object], runs: int) -> tuple[float, float, int]:
    times, found = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - start) * 1000)
        found += len(getattr(result, "datasets", []))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], found // runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--series-per-study", type=int, default=2)
    parser.add_argument("--instances-per-series", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(7)
    with fresh_database(args.postgres, "qido_bench") as url:
        engine = db.make_engine(url)
        try:
            db.upgrade(engine)
            start = time.perf_counter()
            sample = seed(engine, args.studies, args.series_per_study, args.instances_per_series, rng)
            total = args.studies * args.series_per_study * args.instances_per_series
            print(f"seeded {args.studies} studies / {total} instances (synthetic rows, COPY) in "
                  f"{time.perf_counter() - start:.1f} s")

            def pick(kind: str) -> str:
                return rng.choice(sample[kind])

            def study_query(*keys: tuple[int, str], limit: int = 100) -> Query:
                return Query(level="study", keys=[parse_key(t, v) for t, v in keys], limit=limit)

            def date_range() -> str:
                year, month = rng.randrange(2010, 2025), rng.randrange(1, 12)
                return f"{year}{month:02d}01-{year}{month:02d}28"

            def series_of_study() -> Query:
                return Query(level="series", keys=[parse_key(0x0020000D, pick("study"))])

            def instances_of_series() -> Query:
                study, series = pick("series").split("|")
                return Query(level="instance", keys=[parse_key(0x0020000D, study), parse_key(0x0020000E, series)])

            searches: dict[str, Callable[[], Query]] = {
                "PatientID": lambda: study_query((0x00100020, pick("patient_id"))),
                "PatientName wildcard": lambda: study_query((0x00100010, pick("name"))),
                "StudyDate range + ModalitiesInStudy": lambda: study_query((0x00080020, date_range()),
                                                                           (0x00080061, "CT")),
                "study's series": series_of_study,
                "series' instances": instances_of_series,
            }
            print(f"{'search (PostgreSQL, in-process)':40} {'p50 ms':>8} {'p95 ms':>8} {'avg hits':>9}")
            for label, make in searches.items():
                p50, p95, hits = _timed(lambda make=make: search(engine, make(), base_url="http://bench"), args.runs)
                print(f"{label:40} {p50:8.2f} {p95:8.2f} {hits:9d}")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
