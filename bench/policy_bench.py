"""QIDO latency with the policy predicate on vs off, on PostgreSQL at 100,000 studies ("synthetic" rows).

    .venv/bin/python bench/policy_bench.py                       # 100k studies / 1M instances
    .venv/bin/python bench/policy_bench.py --studies 10000 --runs 50

The index is seeded as bench/qido_bench.py does, spread over 20 institutions, with 2,000 doctors treating
25 patients each (care relationships in 10 departments per institution), 10,000 active grants and 2,000
research shares per institution. Each typical search runs as the system (no predicate) and as each role's
principal (the predicate inside the one SQL statement); the table prints p50/p95 and on/off ratios of p50.
Goal (issue 6): under 1.20.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qido_bench import NOW, _copy, _timed, fresh_database, seed

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
        conn.execute(sa.text("ANALYZE"))


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
    args = parser.parse_args()
    rng = random.Random(11)
    with fresh_database(args.postgres, "policy_bench") as url:
        engine = db.make_engine(url)
        try:
            db.upgrade(engine)
            start = time.perf_counter()
            sample = seed(engine, args.studies, 2, 5, rng)
            seed_policy(engine, args.studies, rng)
            print(f"seeded {args.studies} studies / {args.studies * 10} instances, 50,000 care relationships, "
                  f"10,000 grants, {min(args.studies, 40_000)} research shares (synthetic) in "
                  f"{time.perf_counter() - start:.1f} s")
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
            print(f"{'search':26} {'principal':28} {'off p50':>8} {'on p50':>8} {'on p95':>8} {'ratio':>6} {'hits':>5}")
            ratios: list[float] = []
            for label, make in searches.items():
                off50, _, _ = _timed(lambda make=make: search(engine, make(), base_url="http://b"), args.runs)
                for who, principal in principals().items():
                    def run(make: Callable[[], Query] = make, principal: Principal = principal) -> object:
                        query = make()
                        view = policy.search_view(principal, query.keys)
                        return search(engine, query, view.visible, "http://b", view.anonymized)

                    on50, on95, hits = _timed(run, args.runs)
                    ratios.append(on50 / off50)
                    print(f"{label:26} {who:28} {off50:8.2f} {on50:8.2f} {on95:8.2f} {on50 / off50:6.2f} {hits:5d}")
            ratios.sort()
            print(f"on/off p50 ratio: median {ratios[len(ratios) // 2]:.2f}, worst {ratios[-1]:.2f} (goal < 1.20)")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
