"""The S3 tier's direct ranged reads: exact bytes, one signed GET each, retries and errors as s3fs maps them."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from dicomweb.backends.s3 import S3Tier
from dicomweb.backends.s3_get import Endpoint, ObjectReader
from dicomweb.backends.s3_sign import GetSigner
from dicomweb.backends.tiers import ObjectMissing, StorageUnavailable

from .conftest import KEY, REGION, SECRET, S3Server, start_s3

OBJECT = bytes(range(256)) * 40  # 10240 bytes


def test_direct_reads_give_the_stored_bytes_for_every_range(s3: S3Server) -> None:
    tier = S3Tier("ext", f"s3://{s3.bucket()}/some/prefix", s3.options())
    assert tier.direct is not None
    data = os.urandom(70_000)
    tier.store_bytes(data, "a/b.dcm")
    for offset, length in [(0, 1), (0, 70_000), (12_345, 777), (69_990, 10), (69_990, 500), (70_000, 5),
                           (90_000, 5), (5, 0)]:
        assert tier.read_range("a/b.dcm", offset, length) == data[offset:offset + length], (offset, length)
    with pytest.raises(ObjectMissing):
        tier.read_range("a/nothing.dcm", 0, 10)


def test_whole_object_readers_read_block_by_block_and_seek(s3: S3Server) -> None:
    tier = S3Tier("ext", f"s3://{s3.bucket()}/p", s3.options())
    assert tier.direct is not None
    data = os.urandom(10_500)
    tier.store_bytes(data, "k.dcm")
    tier.store_bytes(b"", "empty.dcm")
    with ObjectReader(tier.direct, "p/k.dcm", 1000, lambda exc: exc) as reader:  # 11 blocks
        assert reader.read() == data
        assert reader.seek(-600, io.SEEK_END) == 9_900
        assert reader.read(100) == data[9_900:10_000]
        reader.seek(1_990)
        assert reader.read(25) == data[1_990:2_015]  # across a block boundary
        reader.seek(20_000)
        assert reader.read(5) == b""
    with ObjectReader(tier.direct, "p/empty.dcm", 1000, lambda exc: exc) as reader:
        assert reader.read() == b""
    with tier.open("k.dcm") as fp:  # the tier's reader: one GET for an object within a part
        assert fp.read(7) == data[:7] and fp.read() == data[7:]
    with pytest.raises(ObjectMissing):
        tier.open("missing.dcm")


def test_options_that_change_a_get_leave_reads_to_s3fs(s3: S3Server) -> None:
    bucket = s3.bucket()
    assert S3Tier("ext", f"s3://{bucket}/p", s3.options(direct_reads=False)).direct is None
    proxied = s3.options(config_kwargs={"proxies": {"http": "http://proxy.lan:3128"}})
    assert S3Tier("ext", f"s3://{bucket}/p", proxied).direct is None
    paying = S3Tier("ext", f"s3://{bucket}/p", s3.options(requester_pays=True))
    assert paying.direct is None
    paying.store_bytes(b"0123456789", "k.dcm")
    assert paying.read_range("k.dcm", 3, 4) == b"3456"


def test_the_signature_is_one_a_checking_store_accepts() -> None:
    """moto checks SigV4 signatures once told to: an IAM user's key reads, a wrong secret is refused."""
    import boto3

    server = start_s3()  # its own server: checking signatures there must not affect other tests
    try:
        httpx.post(f"{server.endpoint}/moto-api/reset-auth", content=b"4").raise_for_status()
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=KEY,
                           aws_secret_access_key=SECRET)
        iam.create_user(UserName="archive")
        iam.put_user_policy(UserName="archive", PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'))
        made = iam.create_access_key(UserName="archive")["AccessKey"]
        s3 = boto3.client("s3", endpoint_url=server.endpoint, region_name=REGION,
                          aws_access_key_id=made["AccessKeyId"], aws_secret_access_key=made["SecretAccessKey"])
        s3.create_bucket(Bucket="checked")  # the last unchecked action
        s3.put_object(Bucket="checked", Key="p/s/x.dcm", Body=OBJECT)
        options = {"endpoint_url": server.endpoint, "region": REGION, "key": made["AccessKeyId"],
                   "secret": made["SecretAccessKey"], "retries": 0}
        tier = S3Tier("ext", "s3://checked/p", options)
        assert tier.read_range("s/x.dcm", 300, 1000) == OBJECT[300:1300]
        forged = S3Tier("ext", "s3://checked/p", {**options, "secret": "not-" + made["SecretAccessKey"]})
        with pytest.raises(StorageUnavailable, match="HTTP 403 SignatureDoesNotMatch: "):
            forged.read_range("s/x.dcm", 300, 1000)
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)


@dataclass
class Stub:
    """An S3 stand-in answering GETs from a script of (status, body) answers; records what it was sent."""

    answers: list[tuple[int, bytes]]
    requests: list[dict[str, str]] = field(default_factory=list)
    endpoint: str = ""
    drop_connections: bool = False  # close each connection after answering, without saying so


@pytest.fixture
def stub() -> Iterator[Stub]:
    script = Stub([])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            script.requests.append({"path": self.path, "client_port": str(self.client_address[1]),
                                    **{k.lower(): v for k, v in self.headers.items()}})
            status, body = script.answers.pop(0) if script.answers else (500, b"")
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = script.drop_connections

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield script
    server.shutdown()
    server.server_close()


def _tier(stub: Stub, **options: object) -> S3Tier:
    return S3Tier("ext", "s3://bucket/pre", {"endpoint_url": stub.endpoint, "key": KEY, "secret": SECRET,
                                              "region": REGION, "retries": 2, "retry_after": 11, **options})


def test_one_signed_ranged_get_per_read(stub: Stub) -> None:
    stub.answers = [(206, OBJECT[100:150])]
    assert _tier(stub).read_range("s/x.dcm", 100, 50) == OBJECT[100:150]
    (sent,) = stub.requests
    assert sent["path"] == "/bucket/pre/s/x.dcm"
    assert sent["range"] == "bytes=100-149"
    assert sent["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/")
    assert f"/{REGION}/s3/aws4_request" in sent["authorization"]
    assert "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date" in sent["authorization"]


def test_connections_are_kept_alive_and_a_dropped_one_is_replaced_unseen(stub: Stub) -> None:
    tier = _tier(stub, retries=0)
    stub.answers = [(206, b"a"), (206, b"b"), (206, b"c")]
    assert [tier.read_range("x.dcm", i, 1) for i in range(3)] == [b"a", b"b", b"c"]
    assert len({r["client_port"] for r in stub.requests}) == 1  # one connection for all three
    stub.requests.clear()
    stub.drop_connections = True  # the store closes idle connections: the next read must not fail
    stub.answers = [(206, b"d"), (206, b"e"), (206, b"f")]
    assert [tier.read_range("x.dcm", i, 1) for i in range(3)] == [b"d", b"e", b"f"]
    assert len(stub.requests) == 3


def test_a_store_failing_mid_object_is_storage_unavailable(stub: Stub) -> None:
    tier = _tier(stub, retries=0, part_size=5 << 20)
    part = 5 << 20
    stub.answers = [(206, bytes(part)), (503, b"<Error><Code>SlowDown</Code></Error>")]
    with tier.open("x.dcm") as fp:
        assert fp.read(10) == bytes(10)
        fp.seek(part)
        with pytest.raises(StorageUnavailable, match="SlowDown"):
            fp.read(10)


def test_a_store_that_ignores_range_still_gives_the_range(stub: Stub) -> None:
    stub.answers = [(200, OBJECT)]
    assert _tier(stub).read_range("x.dcm", 1000, 24) == OBJECT[1000:1024]


def test_throttling_is_retried_then_a_503_with_the_tier_retry_after(stub: Stub) -> None:
    stub.answers = [(503, b"<Error><Code>SlowDown</Code></Error>"), (206, OBJECT[:10])]
    assert _tier(stub).read_range("x.dcm", 0, 10) == OBJECT[:10]
    assert len(stub.requests) == 2
    stub.requests.clear()
    stub.answers = [(503, b"<Error><Code>SlowDown</Code></Error>")] * 3
    with pytest.raises(StorageUnavailable) as caught:
        _tier(stub).read_range("x.dcm", 0, 10)
    assert caught.value.retry_after == 11
    assert "SlowDown" in str(caught.value)
    assert len(stub.requests) == 3  # the first try and two retries


def test_refusals_are_not_retried_and_missing_objects_are_missing(stub: Stub) -> None:
    stub.answers = [(403, b"<Error><Code>AccessDenied</Code></Error>")]
    with pytest.raises(StorageUnavailable, match="AccessDenied"):
        _tier(stub).read_range("x.dcm", 0, 10)
    assert len(stub.requests) == 1
    stub.answers = [(404, b"<Error><Code>NoSuchKey</Code></Error>")]
    with pytest.raises(ObjectMissing):
        _tier(stub).read_range("x.dcm", 0, 10)


def test_credentials_come_from_the_default_chain_or_none_for_anonymous(stub: Stub,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-environment")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    options = {"endpoint_url": stub.endpoint, "region": REGION}
    stub.answers = [(206, b"ab"), (206, b"cd")]
    assert S3Tier("ext", "s3://bucket/p", options).read_range("k.dcm", 0, 2) == b"ab"
    assert S3Tier("ext", "s3://bucket/p", {**options, "anon": True}).read_range("k.dcm", 2, 2) == b"cd"
    signed, anonymous = stub.requests
    assert signed["authorization"].startswith("AWS4-HMAC-SHA256 Credential=from-the-environment/")
    assert "authorization" not in anonymous


def test_endpoints_address_the_bucket_as_s3_clients_do() -> None:
    aws = Endpoint.for_bucket("scans", None, "eu-west-1", "auto")
    assert aws.url("p/1.2/3.dcm") == "https://scans.s3.eu-west-1.amazonaws.com/p/1.2/3.dcm"
    assert Endpoint.for_bucket("a.b", None, "eu-west-1", "auto").base == "https://s3.eu-west-1.amazonaws.com/a.b/"
    assert Endpoint.for_bucket("scans", None, "eu-west-1", "path").base == "https://s3.eu-west-1.amazonaws.com/scans/"
    assert Endpoint.for_bucket("scans", "http://minio:9000/", "us-east-1", "auto").base == "http://minio:9000/scans/"
    assert Endpoint.for_bucket("scans", "https://ceph.lan", "us-east-1", "virtual").base == "https://scans.ceph.lan/"


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////wEaDM+session/token=="])
def test_the_get_signer_signs_as_botocore_does(token: str | None) -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = "https://minio.example:9000/bucket/pre/1.2.840/1.2.3/4.5.6.abc123.dcm"
    reference = AWSRequest(method="GET", url=url, headers={"Range": "bytes=100-1123"})
    S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY", token), "s3", "eu-central-1").add_auth(
        reference)
    when = datetime.strptime(reference.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = GetSigner("eu-central-1").headers("minio.example:9000", "/bucket/pre/1.2.840/1.2.3/4.5.6.abc123.dcm",
                                             "bytes=100-1123", "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
                                             token, now=when)
    assert ours == {k: v for k, v in reference.headers.items()}
