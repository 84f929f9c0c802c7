"""The S3 tier (AWS, MinIO, Ceph RGW, any S3-protocol store) through s3fs.

What matters for an archive: one ranged GET per frame read, multipart uploads for large objects (an object
appears only when complete), one connection pool per process reused by every request, and short timeouts
with few retries so an unreachable store answers 503 with Retry-After in seconds instead of hanging.

Tier options (``[[tiers]] options`` in TOML): ``endpoint_url``, ``key``, ``secret``, ``token``, ``region``,
``connect_timeout`` (s, default 3), ``read_timeout`` (s, default 30), ``retries`` (default 2),
``max_pool_connections`` (default 32), ``part_size`` (bytes per multipart part, default 16 MiB) and
``retry_after`` (s, what a 503 tells clients, default 30); any other option goes to ``s3fs.S3FileSystem``.
"""

from __future__ import annotations

from typing import Any

import fsspec

from .tiers import FsspecTier

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


class S3Tier(FsspecTier):
    """``s3://bucket/prefix``: objects under the prefix, keys as the index names them."""

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None, **_: Any):
        kwargs, retries, self.part_size, self.retry_after = s3fs_options(options or {})
        self.name = name
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **kwargs)
        self.fs.retries = retries  # s3fs's own retry loop (a class attribute, not a constructor argument)
        self.root = root.rstrip("/")

    def store_file(self, source: Any, key: str) -> None:
        # put_file uploads in parts of part_size, several at once, and completes the upload at the end.
        try:
            self.fs.put_file(str(source), self._path(key), chunksize=self.part_size)
        except Exception as exc:
            raise self._error("store", key, exc) from exc
        source.unlink(missing_ok=True)

    def open(self, key: str) -> Any:
        # Whole-file readers (series retrieval) read ahead one part at a time; frames use read_range.
        try:
            return self.fs.open(self._path(key), "rb", block_size=self.part_size, cache_type="readahead")
        except Exception as exc:
            raise self._error("read", key, exc) from exc
