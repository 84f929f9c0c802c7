"""Moving studies local -> laboratory -> external (S3) and back: byte-exact, readable throughout, recoverable."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.backends.lifecycle import AccessTracker, plan, usage
from dicomweb.cli import app as cli
from dicomweb.index.models import Instance, Study, TierMove
from dicomweb.services.migration import MigrationService
from dicomweb.settings import LifecycleRule

from .conftest import S3Server, ingest, make_settings, sample_entries, tier_config, toml_config

FRAMES = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
INSTANCE = {"Accept": "application/dicom"}


def _locations(archive: Archive) -> dict[str, tuple[str, str, str]]:
    table = Instance.__table__  # type: ignore[attr-defined]
    with archive.engine.connect() as conn:
        rows = conn.execute(select(table.c.sop_instance_uid, table.c.tier, table.c.storage_key, table.c.sha256))
        return {r.sop_instance_uid: (r.tier, r.storage_key, r.sha256) for r in rows}


def _copies(archive: Archive, key: str) -> list[str]:
    return [name for name, tier in archive.tiers.tiers.items() if tier.exists(key)]


def test_round_trip_through_every_tier_is_byte_exact(s3: S3Server, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, s3, s3.bucket())
    archive = Archive.open(settings)
    entries = sample_entries(3, multiframe=True)
    ingest(archive, entries)
    mover = MigrationService(archive.engine, archive.tiers, drain_seconds=0)
    try:
        with TestClient(create_app(settings, archive)) as client:
            urls = [f"/dicom-web/studies/{e['study_uid']}/series/{e['series_uid']}/instances/{e['sop_instance_uid']}"
                    for e in entries]
            instance_before = [client.get(u, headers=INSTANCE).content for u in urls]
            frame_before = client.get(urls[0] + "/frames/2", headers=FRAMES)
            assert frame_before.status_code == 200
            for target in ("lab", "national", "local", "national", "lab"):
                for entry in entries:
                    report = mover.move_study(entry["study_uid"], target)
                    assert report.instances == 1 and report.skipped == 0
                assert [client.get(u, headers=INSTANCE).content for u in urls] == instance_before
                frame = client.get(urls[0] + "/frames/2", headers=FRAMES)
                assert frame.status_code == 200
                # Same bytes, same multipart framing except the boundary.
                assert len(frame.content) == len(frame_before.content)
                boundary = frame.headers["content-type"].split("boundary=")[1].strip('"')
                old_boundary = frame_before.headers["content-type"].split("boundary=")[1].strip('"')
                assert frame.content.replace(boundary.encode(), old_boundary.encode()) == frame_before.content
                for tier, key, sha in _locations(archive).values():
                    assert tier == target
                    assert _copies(archive, key) == [target]  # exactly one copy, where the index says
                    assert archive.tiers.raw(tier).sha256(key) == sha
            # Moving again is a no-op.
            assert mover.move_study(entries[0]["study_uid"], "lab").instances == 0
            listed = client.get("/admin/tiers").json()
            assert [(t["name"], t["studies"], t["instances"]) for t in listed] == [
                ("local", 0, 0), ("lab", 3, 3), ("national", 0, 0)]
    finally:
        archive.close()


def test_a_reader_during_migration_never_sees_an_error(s3: S3Server, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, s3, s3.bucket())
    archive = Archive.open(settings)
    entries = sample_entries(4)
    ingest(archive, entries)
    expected = {e["sop_instance_uid"]: b"".join(archive.retrieve.iter_bytes(
        archive.retrieve.instances(e["study_uid"], sop=e["sop_instance_uid"])[0])) for e in entries}
    stop, errors, reads = threading.Event(), [], [0]

    def reader() -> None:
        while not stop.is_set():
            for entry in entries:
                try:
                    inst = archive.retrieve.instances(entry["study_uid"], sop=entry["sop_instance_uid"])[0]
                    data = b"".join(archive.retrieve.iter_bytes(inst))
                    head = archive.retrieve.read_range(inst, 0, 200)
                    if data != expected[entry["sop_instance_uid"]] or head != data[:200]:
                        errors.append(f"{entry['path']}: different bytes from {inst.tier}")
                    reads[0] += 1
                except Exception as exc:  # the point: nothing may be raised
                    errors.append(f"{entry['path']}: {type(exc).__name__}: {exc}")

    thread = threading.Thread(target=reader)
    thread.start()
    mover = MigrationService(archive.engine, archive.tiers, drain_seconds=0)  # no grace: read-through must cover
    try:
        for target in ("national", "lab", "local", "national", "local") * 2:
            for entry in entries:
                mover.move_study(entry["study_uid"], target)
    finally:
        stop.set()
        thread.join()
        archive.close()
    assert errors == []
    assert reads[0] > len(entries)


def test_recovery_keeps_the_indexed_copy_and_removes_the_other(s3: S3Server, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, s3, s3.bucket())
    archive = Archive.open(settings)
    entries = sample_entries(2)
    ingest(archive, entries)
    locations = _locations(archive)
    (tier_a, key_a, _), (tier_b, key_b, _) = (locations[e["sop_instance_uid"]] for e in entries)
    instances, moves = Instance.__table__, TierMove.__table__  # type: ignore[attr-defined]
    # A crashed mover (pid 1 on another "host" counts as stale by age): one copy made but not switched,
    # one switched but with its source not yet deleted.
    for key in (key_a, key_b):
        with archive.tiers.raw("local").open(key) as fp:
            archive.tiers.raw("national").store_stream(fp, key)
    with archive.engine.begin() as conn:
        ids = dict(conn.execute(select(instances.c.sop_instance_uid, instances.c.id)).all())
        conn.execute(update(instances).where(instances.c.storage_key == key_b).values(tier="national"))
        old = datetime.now(UTC) - timedelta(hours=2)
        conn.execute(moves.insert(), [
            {"instance_id": ids[entries[0]["sop_instance_uid"]], "study_instance_uid": entries[0]["study_uid"],
             "source_tier": "local", "target_tier": "national", "storage_key": key_a, "state": "copying",
             "owner": "elsewhere:1:x", "updated_at": old},
            {"instance_id": ids[entries[1]["sop_instance_uid"]], "study_instance_uid": entries[1]["study_uid"],
             "source_tier": "local", "target_tier": "national", "storage_key": key_b, "state": "switched",
             "owner": "elsewhere:1:x", "updated_at": old},
        ])
    assert _copies(archive, key_a) == ["local", "national"] and _copies(archive, key_b) == ["local", "national"]
    mover = MigrationService(archive.engine, archive.tiers, drain_seconds=0)
    report = mover.recover()
    assert (report.moves, report.copies_removed) == (2, 2)
    assert _copies(archive, key_a) == ["local"] and _copies(archive, key_b) == ["national"]
    assert mover.pending() == 0
    assert tier_a == tier_b == "local"
    archive.close()


def test_lifecycle_rules_plan_by_age_institution_and_high_water(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket()
    tiers = tier_config(tmp_path, s3, bucket)
    tiers[0]["capacity_bytes"] = 1
    rules = [
        {"source": "local", "target": "lab", "after_days": 30, "since": "read"},
        {"source": "lab", "target": "national", "after_days": 365, "since": "stored"},
        {"source": "local", "target": "national", "after_days": 10, "since": "stored", "institution": "Far Clinic"},
    ]
    settings = make_settings(tmp_path, s3, bucket, tiers=tiers, lifecycle=rules)
    assert settings.lifecycle[2] == LifecycleRule("local", "national", 10, "stored", "Far Clinic")
    archive = Archive.open(settings)
    entries = sample_entries(3)
    ingest(archive, entries)
    uids = [e["study_uid"] for e in entries]
    study = Study.__table__  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    with archive.engine.begin() as conn:
        conn.execute(update(study).where(study.c.study_instance_uid == uids[0]).values(
            created_at=now - timedelta(days=40)))
        conn.execute(update(study).where(study.c.study_instance_uid == uids[1]).values(
            created_at=now - timedelta(days=40), institution_name="Far Clinic"))
        conn.execute(update(study).where(study.c.study_instance_uid == uids[2]).values(
            created_at=now - timedelta(days=40)))
    # Study 2 was read a day ago: the default rule counts from the last read.
    tracker = AccessTracker(archive.engine)
    tracker(archive.tiers.raw("local"), f"{uids[2]}/x/y.dcm")
    assert tracker.flush() == 1
    by_age = {m.study_instance_uid: (m.source, m.target) for m in plan(archive.engine, archive.tiers, settings)}
    assert by_age[uids[0]] == ("local", "lab")
    assert by_age[uids[1]] == ("local", "national")
    # The local tier holds far more than its 1-byte capacity: the recently read study goes down too.
    assert by_age[uids[2]] == ("local", "lab")
    archive.tiers.raw("local").capacity_bytes = None  # without the capacity, only the age rules count
    assert uids[2] not in {m.study_instance_uid for m in plan(archive.engine, archive.tiers, settings)}
    archive.tiers.raw("local").capacity_bytes = 1
    # The CLI's dry run shows the same plan and moves nothing; migrate applies it; tiers counts.
    config = toml_config(tmp_path / "c.toml", tiers, data_dir=str(tmp_path / "data"), fsync=False,
                         migration_drain_seconds=0)
    with config.open("a") as fp:
        for rule in rules:
            fp.write("[[lifecycle]]\n" + "".join(f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n"
                                                    for k, v in rule.items()))
    runner = CliRunner()
    dry = runner.invoke(cli, ["migrate", "--config", str(config), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "3 moves planned" in dry.output
    assert {t for t, _, _ in _locations(archive).values()} == {"local"}
    done = runner.invoke(cli, ["migrate", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert "moved 3 instances of 3 studies" in done.output
    assert sorted(t for t, _, _ in _locations(archive).values()) == ["lab", "lab", "national"]
    assert [(u.name, u.studies) for u in usage(archive.engine, archive.tiers)] == [
        ("local", 0), ("lab", 2), ("national", 1)]
    shown = runner.invoke(cli, ["tiers", "--config", str(config)])
    assert shown.exit_code == 0 and "laboratory" in shown.output, shown.output
    archive.close()


def test_unknown_tier_in_a_rule_is_a_clear_error(s3: S3Server, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, s3, s3.bucket(),
                             lifecycle=[{"source": "local", "target": "tape", "after_days": 1}])
    archive = Archive.open(settings)
    with pytest.raises(ValueError, match="unknown tier 'tape'"):
        plan(archive.engine, archive.tiers, settings)
    archive.close()
