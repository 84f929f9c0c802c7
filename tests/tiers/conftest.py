"""Tiers tests: a real S3-protocol server (moto's standalone server) on 127.0.0.1, archives with three tiers."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from dicomweb.archive import Archive
from dicomweb.settings import Settings, load_settings
from tests.conftest import data_index, data_path, free_port

KEY, SECRET, REGION = "testing-key", "testing-secret", "us-east-1"


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def options(self, **extra: Any) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint, "key": KEY, "secret": SECRET, "region": REGION, **extra}

    def bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{self.endpoint}/{name}", timeout=10).raise_for_status()
        return name


def start_s3() -> S3Server:
    port = free_port()
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(endpoint, timeout=1)
            return S3Server(endpoint, process)
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("moto_server did not start")


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    server = start_s3()
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


def tier_config(tmp_path: Path, s3: S3Server, bucket: str, **s3_options: Any) -> list[dict[str, Any]]:
    return [
        {"name": "local", "url": (tmp_path / "local").as_uri(), "role": "local"},
        {"name": "lab", "url": (tmp_path / "lab").as_uri(), "role": "laboratory"},
        {"name": "national", "url": f"s3://{bucket}/archive", "role": "external",
         "options": s3.options(**s3_options)},
    ]


def make_settings(tmp_path: Path, s3: S3Server, bucket: str, **overrides: Any) -> Settings:
    tiers = overrides.pop("tiers", None) or tier_config(tmp_path, s3, bucket)
    return load_settings(data_dir=tmp_path / "data", tiers=tiers, ingest_processes=0, fsync=False,
                         migration_drain_seconds=0, **overrides)


def toml_config(path: Path, tiers: list[dict[str, Any]], **values: Any) -> Path:
    """The same settings as a TOML file (for subprocesses: the CLI, workers)."""
    def literal(value: Any) -> str:
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):
            return "{ " + ", ".join(f"{k} = {literal(v)}" for k, v in value.items()) + " }"
        return repr(value)

    lines = [f"{k} = {literal(v)}" for k, v in values.items()]
    for tier in tiers:
        lines.append("[[tiers]]")
        lines.extend(f"{k} = {literal(v)}" for k, v in tier.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def sample_entries(count: int, *, multiframe: bool = False) -> list[dict[str, Any]]:
    """Valid files with distinct SOP Instance UIDs, spread over studies; a multi-frame one first if asked."""
    seen: set[str] = set()
    chosen: list[dict[str, Any]] = []
    entries = sorted((e for e in data_index() if e["valid"]), key=lambda e: (e["frames"] <= 1, e["path"]))
    if not multiframe:
        entries = sorted(entries, key=lambda e: e["path"])
    for entry in entries:
        if entry["sop_instance_uid"] in seen or data_path(entry).stat().st_size > 8 << 20:
            continue
        seen.add(entry["sop_instance_uid"])
        chosen.append(entry)
        if len(chosen) == count:
            break
    return chosen


def ingest(archive: Archive, entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        result = archive.ingest.store(archive.stage_file(data_path(entry)))
        assert result.outcome == "stored", (entry["path"], result.message)
