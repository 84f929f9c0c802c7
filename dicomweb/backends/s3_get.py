"""Ranged GETs against an S3-protocol store on the calling thread: the frame path's one request per read.

s3fs runs every call on its own event-loop thread through aiobotocore, which costs milliseconds per small
read (thread hand-off, parameter validation, response parsing). A frame needs none of that: one signed
``GET`` with a ``Range`` header (:mod:`.s3_sign`) over a kept-alive ``http.client`` connection taken from a
small shared pool, and the same error classes s3fs would raise so the tier maps them the same way (a
missing object is ``FileNotFoundError``, anything else an ``OSError``). Credentials are botocore's (static
keys, or its default chain with refreshing).
"""

from __future__ import annotations

import http.client
import io
import os
import random
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from botocore.credentials import Credentials, ReadOnlyCredentials

from .s3_sign import GetSigner

# Statuses worth another try (throttling, a node restarting); any other error answer is final.
RETRYABLE = frozenset({429, 500, 502, 503, 504})
# A kept-alive connection the server has since closed fails like this on reuse: try once on a new one.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class S3RequestError(OSError):
    """The store answered a GET with an error (or not at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    """Where a bucket's objects are: ``scheme://netloc`` + ``prefix`` + quoted key."""

    scheme: str
    netloc: str
    prefix: str  # the URL path before the key, "/" or "/bucket/"

    @classmethod
    def for_bucket(cls, bucket: str, endpoint_url: str | None, region: str, addressing_style: str) -> Endpoint:
        if endpoint_url is None:  # AWS itself: virtual-hosted unless asked otherwise
            endpoint_url = f"https://s3.{region}.amazonaws.com"
            virtual = addressing_style != "path"
        else:  # MinIO, Ceph, moto ...: path style unless asked otherwise
            virtual = addressing_style == "virtual"
        parts = urlsplit(endpoint_url.rstrip("/"))
        netloc = parts.netloc
        default_port = {"http": 80, "https": 443}.get(parts.scheme)
        if parts.port is not None and parts.port == default_port:  # as the Host header will carry it
            netloc = netloc.rsplit(":", 1)[0]
        if virtual and "." not in bucket:  # a dotted bucket name would not match the TLS certificate's name
            return cls(parts.scheme, f"{bucket}.{netloc}", f"{parts.path}/")
        return cls(parts.scheme, netloc, f"{parts.path}/{quote(bucket, safe='')}/")

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}"

    def path(self, object_key: str) -> str:
        return self.prefix + quote(object_key, safe="/~")

    def url(self, object_key: str) -> str:
        return f"{self.scheme}://{self.netloc}{self.path(object_key)}"


class ConnectionPool:
    """Idle kept-alive connections to one endpoint, shared by every thread (deque pops are atomic)."""

    def __init__(self, endpoint: Endpoint, connect_timeout: float, read_timeout: float, keep: int,
                 verify: bool | str = True) -> None:
        self.endpoint = endpoint
        self.connect_timeout, self.read_timeout, self.keep = connect_timeout, read_timeout, keep
        self.context: ssl.SSLContext | None = None
        if endpoint.scheme == "https":
            self.context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            if verify is False:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.idle: deque[http.client.HTTPConnection] = deque()
        self.pid = os.getpid()

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before (so may have been closed by the server since)."""
        if os.getpid() != self.pid:  # a forked child must not talk on its parent's connections
            self.idle, self.pid = deque(), os.getpid()
        try:
            return self.idle.pop(), True
        except IndexError:
            pass
        host = self.endpoint.netloc
        if self.context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, timeout=self.connect_timeout, context=self.context)
        else:
            conn = http.client.HTTPConnection(host, timeout=self.connect_timeout)
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)
        return conn, False

    def give_back(self, conn: http.client.HTTPConnection) -> None:
        if len(self.idle) < self.keep:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


CredentialSource = Callable[[], ReadOnlyCredentials | None]


def static_credentials(key: str, secret: str, token: str | None) -> CredentialSource:
    frozen = Credentials(key, secret, token).get_frozen_credentials()
    return lambda: frozen


def chain_credentials(profile: str | None) -> CredentialSource:
    """botocore's default chain (environment, config files, instance roles), looked up on the first read
    (not when the tier opens: an instance-metadata probe can take seconds) and refreshed when it expires."""
    import botocore.session

    lock = threading.Lock()
    found: list[Any] = []

    def current() -> ReadOnlyCredentials | None:
        with lock:
            if not found:
                found.append(botocore.session.Session(profile=profile).get_credentials())
        return found[0].get_frozen_credentials() if found[0] is not None else None

    return current


class RangedGetter:
    """``read(key, offset, length)``: the bytes, in one signed ranged GET, retried on transient failures."""

    def __init__(self, endpoint: Endpoint, region: str, credentials: CredentialSource | None, *,
                 connect_timeout: float, read_timeout: float, retries: int, pool_size: int,
                 verify: bool | str = True) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.retries = retries
        self.signer = GetSigner(region)
        self.pool = ConnectionPool(endpoint, connect_timeout, read_timeout, pool_size, verify)

    def _headers(self, path: str, offset: int, length: int) -> dict[str, str]:
        range_value = f"bytes={offset}-{offset + length - 1}"
        frozen = self.credentials() if self.credentials is not None else None
        if frozen is None:
            return {"Range": range_value}
        return self.signer.headers(self.endpoint.netloc, path, range_value, frozen.access_key, frozen.secret_key,
                                   frozen.token)

    def read(self, object_key: str, offset: int, length: int) -> bytes:
        return self.read_sized(object_key, offset, length)[0]

    def read_sized(self, object_key: str, offset: int, length: int) -> tuple[bytes, int | None]:
        """The bytes and, when the store says (Content-Range), the object's whole size."""
        path = self.endpoint.path(object_key)
        attempt = 0
        while True:
            try:
                return self._get(path, object_key, offset, length)
            except S3RequestError as exc:
                if (exc.status is not None and exc.status not in RETRYABLE) or attempt >= self.retries:
                    raise
            attempt += 1
            # Full jitter, like botocore's standard mode, but capped low: a frame reader is waiting.
            time.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))

    def _exchange(self, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """One request and its whole answer; a stale kept-alive connection is replaced once, silently."""
        while True:
            try:
                conn, reused = self.pool.take()
            except OSError as exc:
                raise S3RequestError(f"cannot connect to {self.endpoint.netloc}: {exc}") from exc
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except STALE as exc:
                conn.close()
                if reused:
                    continue
                raise S3RequestError(f"{self.endpoint.netloc} dropped the connection: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise S3RequestError(f"{self.endpoint.netloc}: {type(exc).__name__}: {exc}") from exc
            if response.will_close:
                conn.close()
            else:
                self.pool.give_back(conn)
            return response.status, body, response.getheader("Content-Range") or ""

    def _get(self, path: str, object_key: str, offset: int, length: int) -> tuple[bytes, int | None]:
        status, body, content_range = self._exchange(path, self._headers(path, offset, length))
        total = _total_size(content_range)
        if status == 206:
            return (body if len(body) <= length else body[:length]), total
        if status == 200:  # a store that ignores Range sends the whole object
            return body[offset : offset + length], len(body)
        if status == 416:  # the range starts past the end: nothing there, as a file read would say
            return b"", total
        detail = _error_detail(body)
        if status == 404:  # NoSuchKey (or NoSuchBucket): what s3fs reports as FileNotFoundError too
            raise FileNotFoundError(f"{object_key}: not in the store ({detail})")
        raise S3RequestError(f"GET {object_key}: HTTP {status} {detail}", status)


def _total_size(content_range: str) -> int | None:
    """``bytes 0-99/1234`` (or ``bytes */1234``) -> 1234."""
    total = content_range.rpartition("/")[2].strip()
    return int(total) if total.isdigit() else None


class ObjectReader(io.RawIOBase):
    """A seekable reader of one object in blocks of ``block`` bytes, each one ranged GET.

    The first block is read when the reader is made, so a missing object fails at open (as a file would)
    and an object that fits in one block costs exactly one request. Errors become what ``on_error`` makes
    of them (the tier's own error classes)."""

    def __init__(self, getter: RangedGetter, object_key: str, block: int,
                 on_error: Callable[[Exception], Exception]) -> None:
        super().__init__()
        self.getter, self.object_key, self.block, self.on_error = getter, object_key, block, on_error
        self.position = 0
        self.size: int | None = None
        self.buffer, self.buffer_start = b"", 0
        self._fill(0)

    def _fill(self, at: int) -> None:
        try:
            data, total = self.getter.read_sized(self.object_key, at, self.block)
        except Exception as exc:
            raise self.on_error(exc) from exc
        if total is None and len(data) < self.block:
            total = at + len(data)  # a short answer ends the object
        if total is not None:
            self.size = total
        self.buffer, self.buffer_start = data, at

    def readinto(self, target: Any) -> int:
        if self.size is not None and self.position >= self.size:
            return 0
        start = self.position - self.buffer_start
        if not 0 <= start < len(self.buffer):
            self._fill(self.position)
            start = 0
            if not self.buffer:
                return 0
        count = min(len(target), len(self.buffer) - start)
        memoryview(target)[:count] = self.buffer[start : start + count]
        self.position += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self.position
        elif whence == io.SEEK_END:
            if self.size is None:
                raise OSError(f"the size of {self.object_key} is not known")
            offset += self.size
        if offset < 0:
            raise ValueError("negative seek position")
        self.position = offset
        return offset

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


_ERROR_FIELD = re.compile(rb"<(Code|Message)>([^<]{0,300})</(?:Code|Message)>")


def _error_detail(body: bytes) -> str:
    """``Code: Message`` from an S3 error document (the start of the body if it is not one)."""
    fields = {name.decode(): value.decode("utf-8", "replace") for name, value in _ERROR_FIELD.findall(body[:4096])}
    if fields:
        return ": ".join(fields[k] for k in ("Code", "Message") if k in fields)
    return body[:200].decode("utf-8", "replace")
