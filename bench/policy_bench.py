"""QIDO latency with the policy predicate on vs off, on PostgreSQL at 100,000 studies ("synthetic" rows).

    .venv/bin/python bench/policy_bench.py                       # 100k studies / 1M instances
    .venv/bin/python bench/policy_bench.py --studies 10000 --runs 50
    .venv/bin/python bench/policy_bench.py --keep-db      # seed database policy_bench_100000 once, reuse it

The index is seeded as bench/qido_bench.py does, spread over 20 institutions, with 2,000 doctors treating
25 patients each (care relationships in 10 departments per institution), 10,000 active grants and 2,000
research shares per institution. Each typical search runs as the system (no predicate) and as each role's
principal (the predicate inside the one SQL statement), paired: each round runs one drawn query as all of them;
the table prints p50/p95 and on/off ratios of p50. Goal (issue 6): under 1.20.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qido_bench import NOW, _copy, fresh_database, kept_database, mark_seeded, seed

from dicomweb.index import db
from dicomweb.policies.engine import PolicyEngine
from dicomweb.policies.principal import NationalId, Principal
from dicomweb.policies.rules import load_rules
from dicomweb.services.query import Query, parse_key, search

INSTITUTIONS = 20
DEPARTMENTS = 10


def seed_policy(engine: sa.Engine, studies: int, rng: random.Random) -> None:
    patients = max(1, studies // 2)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE study SET institution_name = 'Inst' || (id % {INSTITUTIONS})"))
        _copy(conn, "care_relationship", ["doctor", "patient_id", "issuer_of_patient_id", "institution",
                                          "department", "valid_from", "created_by", "created_at"],
              ((f"doc{d}", f"PID{rng.randrange(patients)}", "", f"Inst{d % INSTITUTIONS}",
                f"dept{d % DEPARTMENTS}", NOW, "bench", NOW) for d in range(2000) for _ in range(25)))
        _copy(conn, "access_grant", ["kind", "study_instance_uid", "institution", "grantee", "requested_by",
                                     "reason", "anonymized", "active_from", "created_at"],
              (("patient", f"2.25.1{rng.randrange(studies)}", "Inst0", f"doc{g % 2000}", "bench", "bench",
                "f", NOW, NOW) for g in range(10_000)))
        _copy(conn, "research_share", ["study_instance_uid", "institution", "shared_by", "reason", "created_at"],
              ((f"2.25.1{s}", f"Inst{s % INSTITUTIONS}", "bench", "bench", NOW)
               for s in rng.sample(range(studies), min(studies, 2000 * INSTITUTIONS))))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # As autovacuum leaves an archive between bulk loads: statistics, and the visibility map that lets
        # PostgreSQL answer from an index alone.
        conn.execute(sa.text("VACUUM ANALYZE"))


def principals() -> dict[str, Principal]:
    return {
        "radiologist (institution)": Principal("rad", frozenset({"radiologist"}), institution="Inst3"),
        "doctor (care + grants)": Principal("doc7", frozenset({"doctor"}), institution="Inst7"),
        "chief (department)": Principal("chief", frozenset({"chief"}), institution="Inst3", department="dept3"),
        "patient (national ID)": Principal("pat", frozenset({"patient"}), national_ids=(NationalId("PID123"),)),
        "researcher (shared, anon.)": Principal("res", frozenset({"researcher"}), institution="Inst3"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--keep-db", action="store_true",
                        help="seed database policy_bench_STUDIES once and keep it for later runs")
    parser.add_argument("--searches", default="", help="comma-separated labels' first words to run (default all)")
    args = parser.parse_args()
    rng = random.Random(11)
    with ExitStack() as stack:
        sample: dict[str, list[str]] | None = None
        if args.keep_db:
            url, sample = stack.enter_context(kept_database(args.postgres, f"policy_bench_{args.studies}"))
        else:
            url = stack.enter_context(fresh_database(args.postgres, "policy_bench"))
        engine = db.make_engine(url)
        stack.callback(engine.dispose)
        db.upgrade(engine)
        if sample is None:
            start = time.perf_counter()
            sample = seed(engine, args.studies, 2, 5, rng)
            seed_policy(engine, args.studies, rng)
            print(f"seeded {args.studies} studies / {args.studies * 10} instances, 50,000 care relationships, "
                  f"10,000 grants, {min(args.studies, 40_000)} research shares (synthetic) in "
                  f"{time.perf_counter() - start:.1f} s")
            if args.keep_db:
                mark_seeded(engine, sample)
        else:
            print(f"reusing the seeded database policy_bench_{args.studies}")
        policy = PolicyEngine(engine, load_rules())

        def pick(kind: str) -> str:
            return rng.choice(sample[kind])

        def date_range() -> str:
            year, month = rng.randrange(2010, 2025), rng.randrange(1, 12)
            return f"{year}{month:02d}01-{year}{month:02d}28"

        searches: dict[str, Callable[[], Query]] = {
            "all studies, newest 100": lambda: Query(level="study", limit=100),
            "PatientName wildcard": lambda: Query(level="study", keys=[parse_key(0x00100010, pick("name"))]),
            "StudyDate range": lambda: Query(level="study", keys=[parse_key(0x00080020, date_range())]),
            "study's series": lambda: Query(level="series", keys=[parse_key(0x0020000D, pick("study"))]),
        }
        if args.searches:
            wanted = [w.strip().lower() for w in args.searches.split(",")]
            searches = {k: v for k, v in searches.items() if any(k.lower().startswith(w) for w in wanted)}
        print(f"{'search':26} {'principal':28} {'off p50':>8} {'on p50':>8} {'on p95':>8} {'ratio':>6} {'hits':>5}")
        ratios: list[float] = []
        subjects: dict[str, Principal | None] = {"off": None, **principals()}
        for label, make in searches.items():
            # Paired and interleaved: each round draws one query and runs it without the predicate and as
            # every principal, starting with a different one each round, so that the other load on the
            # machine and the caches warmed by the previous run weigh on every column alike.
            times: dict[str, list[float]] = {who: [] for who in subjects}
            found: dict[str, int] = dict.fromkeys(subjects, 0)
            for round_ in range(args.runs):
                query = make()
                order = list(subjects)
                order = order[round_ % len(order):] + order[:round_ % len(order)]
                for who in order:
                    principal = subjects[who]
                    start = time.perf_counter()
                    if principal is None:
                        result = search(engine, query, base_url="http://b")
                    else:
                        view = policy.search_view(principal, query.keys)
                        result = search(engine, query, view.visible, "http://b", view.anonymized)
                    times[who].append((time.perf_counter() - start) * 1000)
                    found[who] += len(result.datasets)
            off50 = statistics.median(times["off"])
            for who in list(subjects)[1:]:
                ordered = sorted(times[who])
                on50, on95 = statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]
                ratios.append(on50 / off50)
                print(f"{label:26} {who:28} {off50:8.2f} {on50:8.2f} {on95:8.2f} {on50 / off50:6.2f} "
                      f"{found[who] // args.runs:5d}")
        ratios.sort()
        print(f"on/off p50 ratio: median {ratios[len(ratios) // 2]:.2f}, worst {ratios[-1]:.2f} (goal < 1.20)")


if __name__ == "__main__":
    main()
