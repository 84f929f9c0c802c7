"""A DIMSE gateway over a fresh archive, in this process, with the HTTP app beside it for WADO/STOW."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pynetdicom.dsutils import split_dataset
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.plugins.dimse import DimseGateway
from dicomweb.settings import load_settings
from tests.conftest import DATA, free_port

# Small files in four transfer syntaxes: explicit VR LE (CT, MR), JPEG lossless, RLE.
FILES = ["pydicom-test-files/CT_small.dcm", "pydicom-data/emri_small.dcm", "pydicom-data/JPEG-LL.dcm",
         "pydicom-data/OBXXXX1A_rle.dcm"]
AE = "DICOMWEB"


@dataclass
class Gateway:
    archive: Archive
    port: int
    http: TestClient
    peer_ports: dict[str, int]
    tmp: Path
    dimse: DimseGateway

    def settle(self) -> None:
        """Wait until what the gateway acknowledged is indexed: it answers a C-STORE once the instance is
        durable in its inbox, before the index holds it."""
        assert self.dimse.settle(timeout=30)

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port


def data_file(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"test data not found: {path}")
    return path


def dataset_bytes(path: Path) -> bytes:
    """A Part 10 file's data set as encoded, after its preamble and file meta."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


def elements(ds: Any) -> list[tuple[Any, str, Any]]:
    """The data set's elements, for comparing with what DCMTK wrote: DCMTK re-encodes what it receives
    (sequence lengths, trailing padding), so its files match element for element, not byte for byte."""
    return [(e.tag, e.VR, e.value) for e in ds if e.tag != 0xFFFCFFFC]


def dcmtk(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"DCMTK's {tool} is not installed (apt-get install dcmtk)")
    return found


def run_tool(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A DCMTK tool with TCP_NODELAY (see tools/peers/README.md, gotcha 3)."""
    return subprocess.run([dcmtk(str(args[0])), *map(str, args[1:])], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TCP_NODELAY": "1"})


def open_gateway(tmp_path: Path, database_url: str, **extra: Any) -> Iterator[Gateway]:
    ports = {"STORESCP": free_port(), "COMMITSCU": free_port(), "MOVESCU": free_port()}
    peers = [{"ae_title": ae, "host": "127.0.0.1", "port": port} for ae, port in ports.items()]
    peers.append({"ae_title": "READONLY", "port": 104, "store": False, "retrieve": False, "principal": "viewer"})
    settings = load_settings(data_dir=tmp_path / "data", database_url=database_url, dimse_port=0,
                             dimse_peers=peers, dimse_timeout_seconds=10, fsync=False, **extra)
    archive = Archive.open(settings, ingest_processes=0)
    gateway = DimseGateway(archive)
    port = gateway.start()
    try:
        with TestClient(create_app(settings, archive)) as http:
            yield Gateway(archive, port, http, ports, tmp_path, gateway)
    finally:
        gateway.stop()
        archive.close()


@pytest.fixture
def gateway(tmp_path: Path, database_url: str) -> Iterator[Gateway]:
    yield from open_gateway(tmp_path, database_url)
