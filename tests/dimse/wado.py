"""WADO-RS and STOW-RS through the in-process HTTP app, for comparing with what DIMSE stored or sent."""

from __future__ import annotations

import uuid
from pathlib import Path

from pydicom.dataset import Dataset

from .conftest import Gateway


def wado_instance(gateway: Gateway, ds: Dataset) -> bytes:
    """The instance's bytes from WADO-RS (multipart/related, transfer syntax as stored)."""
    url = (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}")
    response = gateway.http.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; '
                                              "transfer-syntax=*"})
    assert response.status_code == 200, response.text
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    parts = [p for p in response.content.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    assert len(parts) == 1
    return parts[0].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")


def stow(gateway: Gateway, path: Path) -> None:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode())
    response = gateway.http.post("/dicom-web/studies", content=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})
    assert response.status_code == 200, response.text
