"""Shared fixtures: test data from ../shared/data, archives on SQLite or PostgreSQL, live servers."""

from __future__ import annotations

import json
import os
import socket
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

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DICOMWEB_TEST_DATA", REPO.parent / "shared" / "data")).resolve()
POSTGRES_URL = os.environ.get("DICOMWEB_TEST_POSTGRES_URL", "")
# Suites that test storage, search and retrieval act as the system; tests/policies turn authorization on.
os.environ.setdefault("DICOMWEB_AUTH", "off")


def data_index() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((DATA / "INDEX.json").read_text())
    return entries


def data_path(entry: dict[str, Any]) -> Path:
    return DATA / entry["path"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A ``dicomweb serve`` process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/dicom-web"

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            self.process.wait(timeout=20)


def start_server(data_dir: Path, env: dict[str, str] | None = None, port: int | None = None) -> LiveServer:
    port = port or free_port()
    log_path = data_dir.parent / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "dicomweb.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data", str(data_dir), "--log-level", "warning"],
        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    server = LiveServer(process, port, data_dir, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.root}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop(kill=True)
    raise RuntimeError("server did not start in 30 s")


def start_authorized_server(data_dir: Path, env: dict[str, str] | None = None) -> tuple[LiveServer, dict[str, str]]:
    """A server with authorization on and an admin made with the command line; returns its bearer header."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "dicomweb.cli"]
    subprocess.run([*cli, "users", "add", "admin", "--role", "admin", "--no-password", "--data", str(data_dir)],
                   check=True, capture_output=True)
    token = subprocess.run([*cli, "token", "admin", "--data", str(data_dir)], check=True, capture_output=True,
                           text=True).stdout.strip()
    server = start_server(data_dir, {"DICOMWEB_AUTH": "on", **(env or {})})
    return server, {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "INDEX.json").exists():
        pytest.skip(f"test data not found at {DATA}")
    return DATA


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh server with an empty SQLite archive."""
    live = start_server(tmp_path / "data")
    yield live
    live.stop()


def _postgres_database() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"dicomweb_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs on SQLite and on PostgreSQL (a fresh database, dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite'}"
        return
    if not POSTGRES_URL:
        pytest.skip("DICOMWEB_TEST_POSTGRES_URL is not set")
    yield from _postgres_database()
