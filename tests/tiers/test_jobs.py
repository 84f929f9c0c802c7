"""Jobs: the embedded engine with retries and the admin API, and Dramatiq on Redis with two worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.jobs import Jobs
from dicomweb.jobs.inprocess import InProcessEngine

from .conftest import S3Server, ingest, make_settings, sample_entries, tier_config, toml_config

REDIS_URL = os.environ.get("DICOMWEB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _wait(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_embedded_jobs_move_retry_and_show_in_the_admin_api(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket()
    tiers = tier_config(tmp_path, s3, bucket)
    # A fourth tier whose S3 endpoint is down: moves there fail, are retried with backoff, then fail.
    tiers.append({"name": "offline", "url": "s3://gone/p", "role": "external",
                  "options": {**s3.options(), "endpoint_url": "http://127.0.0.1:9", "retries": 0}})
    settings = make_settings(tmp_path, s3, bucket, tiers=tiers, jobs_max_attempts=3, jobs_backoff_seconds=0.05,
                             lifecycle=[{"source": "local", "target": "national", "after_days": 0}])
    archive = Archive.open(settings)
    entries = sample_entries(3)
    ingest(archive, entries)
    try:
        with TestClient(create_app(settings, archive)) as client:
            jobs: Jobs = client.app.state.background.jobs  # type: ignore[attr-defined]
            assert isinstance(jobs.engine, InProcessEngine)
            bad = client.post(f"/admin/studies/{entries[0]['study_uid']}/move", params={"tier": "offline"})
            assert bad.status_code == 202
            bad_id = bad.json()["id"]
            _wait(lambda: client.get(f"/admin/jobs/{bad_id}").json()["state"] == "failed")
            failed = client.get(f"/admin/jobs/{bad_id}").json()
            assert failed["attempts"] == 3 and failed["maxAttempts"] == 3
            assert failed["lastError"].startswith("MigrationError: copying")
            assert failed["payload"] == {"study": entries[0]["study_uid"], "target": "offline"}
            # The lifecycle pass fans out one move per study; all succeed.
            lifecycle = client.post("/admin/lifecycle")
            assert lifecycle.status_code == 202
            _wait(lambda: client.get("/admin/jobs").json()["counts"]["succeeded"] == 4)
            listing = client.get("/admin/jobs", params={"state": "succeeded"}).json()
            assert listing["engine"] == "in-process"
            kinds = sorted(j["kind"] for j in listing["jobs"])
            assert kinds == ["apply_lifecycle", "migrate_study", "migrate_study", "migrate_study"]
            assert {j["result"]["target"] for j in listing["jobs"] if j["kind"] == "migrate_study"} == {"national"}
            assert [t["studies"] for t in client.get("/admin/tiers").json()] == [0, 0, 3, 0]
            # A failed job can be retried by an operator; a finished one cannot; bad input is a 4xx.
            assert client.post(f"/admin/jobs/{bad_id}/retry").status_code == 202
            done_id = listing["jobs"][0]["id"]
            conflict = client.post(f"/admin/jobs/{done_id}/retry")
            assert conflict.status_code == 409 and "only a failed job" in conflict.json()["detail"]
            assert client.get("/admin/jobs/999999").status_code == 404
            assert client.get("/admin/jobs/abc").status_code == 400
            assert client.get("/admin/jobs", params={"state": "lost"}).status_code == 400
            assert client.post("/admin/studies/1.2.3/move", params={"tier": "nowhere"}).status_code == 400
            assert client.post("/admin/studies/1.2.3/move", params={"tier": "lab"}).status_code == 404
    finally:
        archive.close()


def test_promote_on_read_brings_a_study_back_to_the_local_tier(s3: S3Server, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, s3, s3.bucket(), promote_on_read="local")
    archive = Archive.open(settings)
    entry = sample_entries(1)[0]
    ingest(archive, [entry])
    from dicomweb.services.migration import MigrationService

    MigrationService(archive.engine, archive.tiers, drain_seconds=0).move_study(entry["study_uid"], "national")
    try:
        with TestClient(create_app(settings, archive)) as client:
            url = f"/dicom-web/studies/{entry['study_uid']}"
            first = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
            assert first.status_code == 200
            _wait(lambda: archive.retrieve.instances(entry["study_uid"])[0].tier == "local")
            again = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
            assert len(again.content) == len(first.content)
    finally:
        archive.close()


@pytest.fixture
def redis_namespace() -> str:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return f"dicomweb-test-{uuid.uuid4().hex[:8]}"


def test_dramatiq_on_redis_with_two_worker_processes(s3: S3Server, tmp_path: Path, redis_namespace: str) -> None:
    bucket = s3.bucket()
    tiers = tier_config(tmp_path, s3, bucket)
    values = {"data_dir": str(tmp_path / "data"), "fsync": False, "ingest_processes": 0,
              "jobs_broker_url": REDIS_URL, "jobs_namespace": redis_namespace, "migration_drain_seconds": 0.3}
    config = toml_config(tmp_path / "workers.toml", tiers, **values)
    settings = make_settings(tmp_path, s3, bucket, jobs_broker_url=REDIS_URL, jobs_namespace=redis_namespace)
    archive = Archive.open(settings)
    entries = sample_entries(8)
    ingest(archive, entries)
    workers = [subprocess.Popen([sys.executable, "-m", "dicomweb.cli", "worker", "--config", str(config),
                                 "--log-level", "warning"], stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / f"worker-{i}.log", "wb")) for i in range(2)]
    jobs = Jobs(archive)
    try:
        ids = [jobs.submit("migrate_study", {"study": e["study_uid"], "target": "national"},
                           f"study:{e['study_uid']}")[0] for e in entries]
        _wait(lambda: all(v.state == "succeeded" for v in (jobs.store.get(i) for i in ids) if v), timeout=90)
        done = [jobs.store.get(i) for i in ids]
        assert all(j is not None and j.state == "succeeded" for j in done)
        pids = {j.worker.split(":")[1] for j in done if j is not None}
        assert pids == {str(w.pid) for w in workers}  # both worker processes took jobs
        assert {i.tier for e in entries for i in archive.retrieve.instances(e["study_uid"])} == {"national"}
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=40)
        jobs.close()
        archive.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{redis_namespace}*"):
            client.delete(key)
    assert all(w.returncode == 0 for w in workers)
