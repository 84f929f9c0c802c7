"""Storage SCP (C-STORE): the received data set, as the peer encoded it, goes through the shared ingest.

pynetdicom calls the handler only once the whole data set has arrived, so a peer that disconnects
mid-transfer leaves nothing behind: the partial P-DATA never reaches the archive.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pynetdicom.events import Event

from ...archive import Archive
from ...services.staging import BlobSpooler
from .access import NOT_AUTHORIZED, AccessRules
from .audit import DimseAudit
from .status import PROCESSING_FAILURE, SUCCESS, status

log = logging.getLogger(__name__)
PREAMBLE = b"\x00" * 128 + b"DICM"


def file_meta_bytes(meta: FileMetaDataset) -> bytes:
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta, enforce_standard=True)
    return buffer.getvalue()


def handle_store(event: Event, archive: Archive, rules: AccessRules,
                 audit: DimseAudit | None = None) -> int | Dataset:
    caller = event.assoc.requestor.ae_title
    if not rules.allows(caller, "store"):
        if audit is not None:
            audit.record(event, "store", "C-STORE", NOT_AUTHORIZED)
        return status(NOT_AUTHORIZED, f"{caller} may not store here")
    spool = BlobSpooler(archive.staging_dir, archive.settings.spool_memory_bytes)
    try:
        spool.write(PREAMBLE + file_meta_bytes(event.file_meta))
        spool.write(event.encoded_dataset(include_meta=False))  # the bytes exactly as the peer sent them
    except BaseException:
        spool.abort()
        raise
    institutions = rules.policy.store_institutions(caller) if rules.policy is not None else None
    result = archive.ingest.store(spool.finish(), None, institutions)
    if audit is not None:
        audit.record(event, "store", "C-STORE", SUCCESS if result.ok else (result.failure_reason or PROCESSING_FAILURE),
                     study=result.study_instance_uid or "", detail=result.message or "", count=int(result.ok))
    if result.ok:
        log.debug("C-STORE %s from %s: %s", result.sop_instance_uid, caller, result.outcome)
        return SUCCESS
    log.info("C-STORE from %s failed: %s", caller, result.message)
    return status(result.failure_reason or PROCESSING_FAILURE, result.message)
