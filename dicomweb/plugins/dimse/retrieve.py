"""C-GET and C-MOVE: the stored files, sent as they were stored.

pynetdicom's retrieve SCPs pass each yielded data set to ``Association.send_c_store``. A ``StoredFile``
stands in for the data set; ``install_sender`` makes the association send it from its Part 10 file without
decoding it (pynetdicom's chunked-file path), so the peer receives exactly the stored bytes. Only when the
peer accepted no context in the stored transfer syntax is the file decoded, for pynetdicom to re-encode in
an accepted native syntax (a compressed file without such a context fails that sub-operation).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, build_context

from ...archive import Archive
from ...services.query import MatchKey, Query, parse_key, search
from ...services.retrieve import StoredInstance
from .access import NOT_AUTHORIZED, AccessRules
from .identifiers import raw_value, uid_list
from .status import CANCEL, IDENTIFIER_MISMATCH, PENDING, UNABLE_TO_PROCESS, status

log = logging.getLogger(__name__)
MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1-255


class RetrieveError(ValueError):
    """The identifier does not say what to retrieve."""


class StoredFile(Dataset):
    """A stored instance standing in for its data set until the sub-operation sends it."""

    def __init__(self, instance: StoredInstance, fetch: Callable[[], tuple[Path, bool]]) -> None:
        super().__init__()
        self.SOPClassUID = instance.sop_class_uid
        self.SOPInstanceUID = instance.sop_instance_uid
        self.stored = instance
        self.fetch = fetch


def install_sender(assoc: Association) -> None:
    """Let ``assoc.send_c_store`` take a StoredFile (set on every association the gateway opens or accepts)."""
    original = assoc.send_c_store

    def send(dataset: Any, msg_id: int = 1, priority: int = 2, originator_aet: str | None = None,
             originator_id: int | None = None) -> Dataset:
        if not isinstance(dataset, StoredFile):
            return original(dataset, msg_id, priority, originator_aet, originator_id)
        path, temporary = dataset.fetch()
        try:
            exact = any(cx.abstract_syntax == dataset.stored.sop_class_uid
                        and cx.transfer_syntax[0] == dataset.stored.transfer_syntax_uid
                        for cx in assoc.accepted_contexts)
            payload: Path | Dataset = path if exact else dcmread(path)
            return original(payload, msg_id, priority, originator_aet, originator_id)
        finally:
            if temporary:
                path.unlink(missing_ok=True)

    setattr(assoc, "send_c_store", send)  # noqa: B010 - an instance attribute shadows the method


def _file(archive: Archive, instance: StoredInstance) -> tuple[Path, bool]:
    """A local Part 10 file holding the instance: the tier's own file when it is one, else a staged copy."""
    with archive.retrieve.open(instance) as fp:
        name = getattr(fp, "name", None)
        if isinstance(name, str) and os.path.isfile(name):
            return Path(name), False
        archive.staging_dir.mkdir(parents=True, exist_ok=True)
        copy = archive.staging_dir / f"dimse-{uuid.uuid4().hex}.part"
        with open(copy, "wb") as out:
            while chunk := fp.read(1 << 20):
                out.write(chunk)
        return copy, True


def _patient_studies(archive: Archive, identifier: Dataset, visible: Any = None) -> list[str]:
    keys: list[MatchKey] = []
    for keyword, tag in (("PatientID", 0x00100020), ("IssuerOfPatientID", 0x00100021)):
        if keyword in identifier and raw_value(identifier[keyword]).strip():
            keys.append(parse_key(tag, raw_value(identifier[keyword])))
    if not keys:
        raise RetrieveError("a PATIENT level retrieve needs a PatientID")
    query = Query(level="study", keys=keys, limit=10_000)
    return [d["0020000D"]["Value"][0] for d in search(archive.engine, query, visible).datasets]


def resolve(archive: Archive, identifier: Dataset, caller: str = "", rules: AccessRules | None = None
            ) -> list[StoredInstance]:
    """The stored instances a retrieve identifier names that the caller may retrieve (one index query per
    study); a study the policy hides is treated as one that is not there."""
    policy = rules.policy if rules is not None else None
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
        raise RetrieveError("QueryRetrieveLevel must be PATIENT, STUDY, SERIES or IMAGE")
    studies = uid_list(identifier, "StudyInstanceUID")
    if level == "PATIENT" or (not studies and level == "STUDY"):
        studies = studies or _patient_studies(archive, identifier,
                                              policy.visible(caller) if policy is not None else None)
    series = set(uid_list(identifier, "SeriesInstanceUID")) if level in ("SERIES", "IMAGE") else set()
    sops = set(uid_list(identifier, "SOPInstanceUID")) if level == "IMAGE" else set()
    if level == "SERIES" and not series:
        raise RetrieveError("a SERIES level retrieve needs a SeriesInstanceUID")
    if level == "IMAGE" and not sops:
        raise RetrieveError("an IMAGE level retrieve needs a SOPInstanceUID")
    if not studies:
        raise RetrieveError(f"a {level} level retrieve needs a StudyInstanceUID")
    found: list[StoredInstance] = []
    for study in studies:
        if policy is not None and not policy.may_retrieve(caller, study):
            continue
        one_series = next(iter(series)) if len(series) == 1 else None
        one_sop = next(iter(sops)) if len(sops) == 1 and one_series else None
        for instance in archive.retrieve.instances(study, one_series, one_sop):
            if (not series or instance.series_instance_uid in series) and (
                    not sops or instance.sop_instance_uid in sops):
                found.append(instance)
    return found


def _suboperations(event: Event, archive: Archive, instances: list[StoredInstance]) -> Iterator[Any]:
    yield len(instances)
    for instance in instances:
        if event.is_cancelled:
            yield CANCEL, None
            return
        yield PENDING, StoredFile(instance, partial(_file, archive, instance))


def _instances(event: Event, archive: Archive, rules: AccessRules) -> list[StoredInstance] | Dataset:
    try:
        return resolve(archive, event.identifier, event.assoc.requestor.ae_title, rules)
    except RetrieveError as exc:
        return status(IDENTIFIER_MISMATCH, str(exc))
    except Exception:
        log.exception("resolving a retrieve failed")
        return status(UNABLE_TO_PROCESS, "the archive could not look up the instances; see its log")


def handle_get(event: Event, archive: Archive, rules: AccessRules) -> Iterator[Any]:
    caller = event.assoc.requestor.ae_title
    found = (_instances(event, archive, rules) if rules.allows(caller, "retrieve")
             else status(NOT_AUTHORIZED, f"{caller} may not retrieve here"))
    if isinstance(found, Dataset):
        yield 1
        yield found, None
        return
    yield from _suboperations(event, archive, found)


def move_contexts(instances: list[StoredInstance]) -> list[PresentationContext]:
    """One context per stored (SOP class, transfer syntax), then native fallbacks for each SOP class."""
    exact = sorted({(i.sop_class_uid, i.transfer_syntax_uid) for i in instances})
    contexts = [build_context(cls, [ts]) for cls, ts in exact]
    native = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
    for cls in sorted({cls for cls, ts in exact if ts not in native}):
        contexts.append(build_context(cls, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    return contexts[:MAX_CONTEXTS]


def handle_move(event: Event, archive: Archive, rules: AccessRules,
                handlers: list[Any]) -> Iterator[Any]:
    caller = event.assoc.requestor.ae_title
    destination_ae = str(event.move_destination or "").strip()
    if not rules.allows(caller, "retrieve"):
        # pynetdicom asks for the destination first; failing here answers 0xC514 (unable to process).
        raise PermissionError(f"{caller} may not retrieve here")
    peer = rules.destination(destination_ae)
    if peer is None:
        log.info("C-MOVE from %s to unknown destination %r refused", caller, destination_ae)
        yield None, None  # 0xA801: move destination unknown
        return
    found = _instances(event, archive, rules)
    if isinstance(found, Dataset) or not found:
        yield peer.host, peer.port
        yield 1 if isinstance(found, Dataset) else 0
        if isinstance(found, Dataset):
            yield found, None
        return
    contexts = move_contexts(found)
    yield peer.host, peer.port, {"contexts": contexts, "evt_handlers": handlers}
    yield from _suboperations(event, archive, found)


__all__ = ["StoredFile", "handle_get", "handle_move", "install_sender", "resolve"]
