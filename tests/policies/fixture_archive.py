"""A small fixed archive for authorization tests: five studies of four patients in two institutions.

| study | patient                                   | institution      | series (modality, instances)     |
|-------|-------------------------------------------|------------------|----------------------------------|
| S1    | NID-1 (NATIONAL), Doe^Jane                | General Hospital | CT x3, SR x1; referred by House  |
| S2    | NID-1 (NATIONAL), Doe^Jane                | City Clinic      | MR x2                            |
| S3    | NID-2 (NATIONAL), Roe^Richard             | General Hospital | CT x2, US x1 (burned-in: YES)    |
| S4    | L-3 (GH-LOCAL), other ID NID-3 (NATIONAL) | General Hospital | CR x1                            |
| S5    | NID-4 (NATIONAL), Poe^Edgar               | City Clinic      | CT x1                            |
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

GH, CC = "General Hospital", "City Clinic"
ROOT = "1.2.826.0.1.3680043.10.1137."


def uid(*parts: int) -> str:
    return ROOT + ".".join(str(p) for p in parts)


@dataclass(frozen=True)
class PatientSpec:
    patient_id: str
    issuer: str
    name: str
    other_ids: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SeriesSpec:
    modality: str
    instances: int
    burned_in: bool = False


@dataclass(frozen=True)
class StudySpec:
    key: str
    patient: PatientSpec
    institution: str
    series: tuple[SeriesSpec, ...]
    referring: str = ""

    @property
    def uid(self) -> str:
        return uid(1, int(self.key[1:]))

    def series_uid(self, index: int) -> str:
        return uid(2, int(self.key[1:]), index + 1)

    def sop_uid(self, index: int, number: int) -> str:
        return uid(3, int(self.key[1:]), index + 1, number + 1)


P1 = PatientSpec("NID-1", "NATIONAL", "Doe^Jane")
P2 = PatientSpec("NID-2", "NATIONAL", "Roe^Richard")
P3 = PatientSpec("L-3", "GH-LOCAL", "Moe^Mary", other_ids=(("NID-3", "NATIONAL"),))
P4 = PatientSpec("NID-4", "NATIONAL", "Poe^Edgar")
STUDIES = (
    StudySpec("S1", P1, GH, (SeriesSpec("CT", 3), SeriesSpec("SR", 1)), referring="House^Gregory"),
    StudySpec("S2", P1, CC, (SeriesSpec("MR", 2),)),
    StudySpec("S3", P2, GH, (SeriesSpec("CT", 2), SeriesSpec("US", 1, burned_in=True))),
    StudySpec("S4", P3, GH, (SeriesSpec("CR", 1),)),
    StudySpec("S5", P4, CC, (SeriesSpec("CT", 1),)),
)
BY_KEY = {s.key: s for s in STUDIES}


def instance_bytes(study: StudySpec, series_index: int, number: int) -> bytes:
    spec = study.series[series_index]
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = study.sop_uid(series_index, number)
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = study.series_uid(series_index)
    ds.FrameOfReferenceUID = uid(4, int(study.key[1:]))
    ds.PatientID = study.patient.patient_id
    ds.IssuerOfPatientID = study.patient.issuer
    ds.PatientName = study.patient.name
    ds.PatientBirthDate = "19700102"
    ds.PatientSex = "F"
    if study.patient.other_ids:
        items = []
        for value, issuer in study.patient.other_ids:
            item = Dataset()
            item.PatientID, item.IssuerOfPatientID = value, issuer
            items.append(item)
        ds.OtherPatientIDsSequence = Sequence(items)
    ds.StudyDate, ds.StudyTime = "20240315", "101500"
    ds.SeriesDate = "20240315"
    ds.AccessionNumber = f"ACC-{study.key}"
    ds.StudyID = study.key
    ds.StudyDescription = f"Study {study.key}"
    ds.InstitutionName = study.institution
    ds.InstitutionAddress = "1 Main Street"
    ds.ReferringPhysicianName = study.referring
    ds.OperatorsName = "Tech^Tom"
    ds.Modality = spec.modality
    ds.SeriesNumber = series_index + 1
    ds.InstanceNumber = number + 1
    ds.BurnedInAnnotation = "YES" if spec.burned_in else "NO"
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(64, dtype=np.uint16) * (number + 1)).tobytes()
    ds.add_new(0x00090010, "LO", "ACME 1.0")
    ds.add_new(0x00091010, "LO", "a private value")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = generate_uid(ROOT)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def all_instances() -> list[tuple[StudySpec, int, int, bytes]]:
    return [(study, si, n, instance_bytes(study, si, n)) for study in STUDIES
            for si, series in enumerate(study.series) for n in range(series.instances)]
