"""The S3 tier against a real S3-protocol server: byte-exact store and read, ranged reads, multipart, 503s."""

from __future__ import annotations

import hashlib
import os
import time
from io import BytesIO
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.backends.s3 import S3Tier
from dicomweb.backends.tiers import ObjectMissing, StorageUnavailable, open_tier
from dicomweb.services.migration import MigrationService
from dicomweb.settings import TierSettings
from tests.conftest import free_port

from .conftest import S3Server, ingest, make_settings, sample_entries, tier_config

MIB = 1 << 20


def test_open_tier_picks_the_s3_plugin_and_keeps_role(s3: S3Server) -> None:
    tier = open_tier(TierSettings("ext", f"s3://{s3.bucket()}/p", "external", s3.options(), 10))
    assert isinstance(tier, S3Tier)
    assert (tier.role, tier.capacity_bytes) == ("external", 10)


def test_store_read_range_delete_byte_exact(s3: S3Server, tmp_path: Path) -> None:
    tier = S3Tier("ext", f"s3://{s3.bucket()}/prefix", s3.options())
    data = os.urandom(300_000)
    tier.store_bytes(data, "a/b/c.dcm")
    source = tmp_path / "f.bin"
    source.write_bytes(data[::-1])
    tier.store_file(source, "a/b/d.dcm")
    assert not source.exists()  # consumed, like the local tier
    with tier.open("a/b/c.dcm") as fp:
        assert fp.read() == data
    assert tier.read_range("a/b/c.dcm", 12345, 777) == data[12345:12345 + 777]
    assert tier.read_range("a/b/d.dcm", 0, 10) == data[::-1][:10]
    assert tier.sha256("a/b/c.dcm") == hashlib.sha256(data).hexdigest()
    assert sorted(k for k, _ in tier.iter_keys()) == ["a/b/c.dcm", "a/b/d.dcm"]
    tier.delete("a/b/c.dcm")
    tier.delete("a/b/c.dcm")  # idempotent
    assert not tier.exists("a/b/c.dcm")
    with pytest.raises(ObjectMissing):
        tier.read_range("a/b/c.dcm", 0, 1)
    with pytest.raises(ObjectMissing):
        tier.open("a/b/c.dcm")


def test_large_object_goes_up_in_parts_and_a_broken_stream_leaves_nothing(s3: S3Server) -> None:
    tier = S3Tier("ext", f"s3://{s3.bucket()}/p", s3.options(part_size=5 * MIB))
    data = os.urandom(12 * MIB + 123)
    tier.store_stream(BytesIO(data), "big.dcm")
    assert tier.sha256("big.dcm") == hashlib.sha256(data).hexdigest()
    assert tier.read_range("big.dcm", 11 * MIB, 1000) == data[11 * MIB:11 * MIB + 1000]
    # A multipart object's ETag is "<md5 of part md5s>-<parts>": three parts of 5 MiB.
    info = tier.fs.info(tier._path("big.dcm"))
    assert str(info["ETag"]).strip('"').endswith("-3")

    class Broken(BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() >= 6 * MIB:
                raise OSError("the source disk failed")
            return super().read(size)

    with pytest.raises(StorageUnavailable):
        tier.store_stream(Broken(data), "broken.dcm")
    assert not tier.exists("broken.dcm")


def test_unreachable_store_is_storage_unavailable_quickly() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    tier = S3Tier("ext", "s3://nowhere/p", {"endpoint_url": dead, "key": "k", "secret": "s", "region": "us-east-1",
                                             "retry_after": 7})
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        tier.read_range("a.dcm", 0, 10)
    assert caught.value.retry_after == 7
    assert time.monotonic() - started < 15


def test_instance_on_a_down_store_answers_503_with_retry_after(s3: S3Server, tmp_path: Path) -> None:
    bucket = s3.bucket()
    settings = make_settings(tmp_path, s3, bucket)
    archive = Archive.open(settings)
    entry = sample_entries(1, multiframe=True)[0]
    ingest(archive, [entry])
    MigrationService(archive.engine, archive.tiers, drain_seconds=0).move_study(entry["study_uid"], "national")
    archive.close()
    # The same index, with the external store's endpoint now refusing connections.
    tiers = tier_config(tmp_path, s3, bucket)
    tiers[2]["options"] = {**tiers[2]["options"], "endpoint_url": f"http://127.0.0.1:{free_port()}", "retry_after": 9}
    down = make_settings(tmp_path, s3, bucket, tiers=tiers)
    archive = Archive.open(down)
    try:
        with TestClient(create_app(down, archive)) as client:
            url = (f"/dicom-web/studies/{entry['study_uid']}/series/{entry['series_uid']}"
                   f"/instances/{entry['sop_instance_uid']}")
            # A frame is read before the answer starts, so the outage becomes the status code.
            response = client.get(url + "/frames/1",
                                  headers={"Accept": 'multipart/related; type="application/octet-stream"'})
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "9"
            assert response.headers["Content-Type"] == "application/problem+json"
            assert "storage tier is not answering" in response.json()["detail"]
            # Metadata comes from the index and still answers.
            assert client.get(url + "/metadata").status_code == 200
    finally:
        archive.close()
