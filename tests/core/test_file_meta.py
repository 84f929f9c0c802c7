"""The gateway's hand-written file meta equals what pydicom writes for the same values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from dicomweb.dicom.file_meta import PREAMBLE, file_meta_bytes

UIDS = st.from_regex(r"[1-9][0-9]{0,5}(\.[1-9][0-9]{0,5}){1,8}", fullmatch=True).filter(lambda u: len(u) <= 64)


@settings(max_examples=100, deadline=None)
@given(UIDS, UIDS, st.sampled_from(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70"]),
       UIDS, st.sampled_from(["PYNETDICOM_304", "X", "ODD_LEN"]))
def test_same_bytes_as_pydicom(sop_class: str, sop_instance: str, syntax: str, implementation: str,
                               version: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = implementation
    meta.ImplementationVersionName = version
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta, enforce_standard=True)
    assert file_meta_bytes(sop_class, sop_instance, syntax, implementation, version) == PREAMBLE + buffer.getvalue()
