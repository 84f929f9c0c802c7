"""The S3 tier (AWS, MinIO, Ceph RGW, any S3-protocol store) through s3fs.

What matters for an archive: one ranged GET per frame read, multipart uploads for large objects (an object
appears only when complete), one connection pool per process reused by every request, and short timeouts
with few retries so an unreachable store answers 503 with Retry-After in seconds instead of hanging.
Reads skip s3fs's event-loop thread: :mod:`.s3_get` sends each ranged GET from the calling thread (one per
frame; a whole-object reader one per part, the first at open, so no HEAD before it); writes, listings and
deletes go through s3fs.

Tier options (``[[tiers]] options`` in TOML): ``endpoint_url``, ``key``, ``secret``, ``token``, ``region``,
``connect_timeout`` (s, default 3), ``read_timeout`` (s, default 30), ``retries`` (default 2),
``max_pool_connections`` (default 32), ``part_size`` (bytes per multipart part, default 16 MiB) and
``retry_after`` (s, what a 503 tells clients, default 30), ``direct_reads`` (default true: reads by
:mod:`.s3_get`; false, or an s3fs or botocore option that changes what a GET means, sends them through s3fs);
any other option goes to ``s3fs.S3FileSystem``.
"""

from __future__ import annotations

import io
import os
from typing import Any

import fsspec

from .s3_get import Endpoint, ObjectReader, RangedGetter, chain_credentials, static_credentials
from .tiers import COPY_CHUNK, FsspecTier, check_key

MIB = 1 << 20


def s3fs_options(options: dict[str, Any]) -> tuple[dict[str, Any], int, int, int]:
    """s3fs keyword arguments from the tier options, retries, the multipart part size and the Retry-After."""
    opts = dict(options)
    region = opts.pop("region", None)
    connect_timeout = float(opts.pop("connect_timeout", 3))
    read_timeout = float(opts.pop("read_timeout", 30))
    retries = int(opts.pop("retries", 2))
    pool = int(opts.pop("max_pool_connections", 32))
    part_size = max(5 * MIB, int(opts.pop("part_size", 16 * MIB)))  # S3's minimum part is 5 MiB
    retry_after = int(opts.pop("retry_after", 30))
    client_kwargs = dict(opts.pop("client_kwargs", {}))
    if region:
        client_kwargs.setdefault("region_name", region)
    if "endpoint_url" in opts:
        client_kwargs.setdefault("endpoint_url", opts.pop("endpoint_url"))
    config_kwargs = {
        "connect_timeout": connect_timeout,
        "read_timeout": read_timeout,
        "retries": {"max_attempts": retries + 1, "mode": "standard"},
        "max_pool_connections": pool,
        **dict(opts.pop("config_kwargs", {})),
    }
    kwargs = {
        "client_kwargs": client_kwargs,
        "config_kwargs": config_kwargs,
        "default_block_size": part_size,
        # Small metadata reads stay small: no listing cache that could hide a just-moved object.
        "use_listings_cache": False,
        **opts,
    }
    return kwargs, retries, part_size, retry_after


# s3fs options the direct reader honours; any other one (requester_pays, version_aware, SSE-C keys in
# s3_additional_kwargs, a custom session ...) may change the request, so reads then stay with s3fs.
DIRECT_SAFE = frozenset({"client_kwargs", "config_kwargs", "default_block_size", "use_listings_cache",
                         "key", "secret", "token", "anon", "profile", "use_ssl"})
# The same for botocore's client and config arguments (a proxy, another signature version ... : s3fs reads).
CLIENT_SAFE = frozenset({"endpoint_url", "region_name", "verify"})
CONFIG_SAFE = frozenset({"connect_timeout", "read_timeout", "retries", "max_pool_connections", "s3"})


def direct_getter(bucket: str, kwargs: dict[str, Any], retries: int) -> RangedGetter | None:
    """The direct ranged reader for s3fs keyword arguments, or None where only s3fs knows what to send."""
    client, config = kwargs["client_kwargs"], kwargs["config_kwargs"]
    if set(kwargs) - DIRECT_SAFE or set(client) - CLIENT_SAFE or set(config) - CONFIG_SAFE:
        return None
    if set(config.get("s3") or {}) - {"addressing_style"}:
        return None
    endpoint_url = client.get("endpoint_url")
    region = client.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        if endpoint_url is None:
            return None  # an AWS bucket in an unknown region: s3fs finds it
        region = "us-east-1"  # what MinIO, Ceph and moto accept by default
    if endpoint_url is not None and "://" not in endpoint_url:
        endpoint_url = f"{'https' if kwargs.get('use_ssl', True) else 'http'}://{endpoint_url}"
    if kwargs.get("anon"):
        credentials = None
    elif kwargs.get("key") and kwargs.get("secret"):
        credentials = static_credentials(kwargs["key"], kwargs["secret"], kwargs.get("token"))
    else:
        credentials = chain_credentials(kwargs.get("profile"))
    style = str((config.get("s3") or {}).get("addressing_style", "auto"))
    return RangedGetter(
        Endpoint.for_bucket(bucket, endpoint_url, region, style), region, credentials,
        connect_timeout=float(config["connect_timeout"]), read_timeout=float(config["read_timeout"]),
        retries=retries, pool_size=int(config["max_pool_connections"]), verify=client.get("verify", True))


class S3Tier(FsspecTier):
    """``s3://bucket/prefix``: objects under the prefix, keys as the index names them."""

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None, **_: Any):
        options = dict(options or {})
        direct = bool(options.pop("direct_reads", True))
        kwargs, retries, self.part_size, self.retry_after = s3fs_options(options)
        self.name = name
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **kwargs)
        self.fs.retries = retries  # s3fs's own retry loop (a class attribute, not a constructor argument)
        self.root = root.rstrip("/")
        bucket, _, self.prefix = self.root.partition("/")
        self.direct = direct_getter(bucket, kwargs, retries) if direct else None

    def store_file(self, source: Any, key: str) -> None:
        # put_file uploads in parts of part_size, several at once, and completes the upload at the end.
        try:
            self.fs.put_file(str(source), self._path(key), chunksize=self.part_size)
        except Exception as exc:
            raise self._error("store", key, exc) from exc
        source.unlink(missing_ok=True)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if self.direct is None:
            return super().read_range(key, offset, length)
        if length <= 0:
            return b""
        try:
            return self.direct.read(self._object_key(key), offset, length)
        except Exception as exc:
            raise self._error("read", key, exc) from exc

    def open(self, key: str) -> Any:
        # Whole-file readers (series retrieval, moves) read one part at a time; frames use read_range.
        if self.direct is not None:
            object_key = self._object_key(key)
            reader = ObjectReader(self.direct, object_key, self.part_size or COPY_CHUNK,
                                  lambda exc: self._error("read", key, exc))
            return io.BufferedReader(reader)  # small reads (a parser's) from its buffer, large ones straight
        try:
            return self.fs.open(self._path(key), "rb", block_size=self.part_size, cache_type="readahead")
        except Exception as exc:
            raise self._error("read", key, exc) from exc

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)
