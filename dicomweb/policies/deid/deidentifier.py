"""The Deidentifier: the anonymized view's answers, de-identified on the fly (PS3.15 Annex E Basic Profile)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from sqlalchemy.engine import Engine

from dicomweb.settings import Settings

from . import dataset_walk, json_walk, keys
from .part10_copy import copy_deidentified
from .profile import Op, dictionary_vr, operation
from .replacer import Replacer
from .store import PseudonymStore


class Deidentifier:
    def __init__(self, secret: bytes, engine: Engine | None, dates: str = "modified") -> None:
        if not secret:
            raise ValueError("the de-identification secret is empty")
        if dates not in ("modified", "remove"):
            raise ValueError(f"deid_dates must be 'modified' or 'remove', not {dates!r}")
        self._secret = secret
        self.dates = dates
        self.store = PseudonymStore(engine) if engine is not None else None

    @classmethod
    def open(cls, settings: Settings, engine: Engine | None) -> Deidentifier:
        return cls(keys.load_secret(settings.deid_secret, settings.data_dir), engine, settings.deid_dates)

    # Derived values --------------------------------------------------------------------------------------

    def pseudonym(self, uid: str) -> str:
        return keys.pseudonym(self._secret, uid)

    def research_patient_id(self, patient_key: str) -> str:
        return keys.research_id(self._secret, patient_key)

    def date_shift_days(self, patient_key: str) -> int:
        return keys.shift_days(self._secret, patient_key)

    # Resolving back --------------------------------------------------------------------------------------

    def remember(self, uids: Iterable[str]) -> None:
        """Record pseudonym -> original for these originals (one batch; already recorded ones are skipped)."""
        if self.store is not None:
            self.store.add({self.pseudonym(u): u for u in uids if u})

    def resolve(self, uid: str) -> str | None:
        return self.resolve_many([uid]).get(uid)

    def resolve_many(self, uids: Iterable[str]) -> dict[str, str]:
        return self.store.originals(uids) if self.store is not None else {}

    # De-identifying --------------------------------------------------------------------------------------

    def _replacer(self, patient_key: str) -> Replacer:
        return Replacer(self.pseudonym, self.research_patient_id(patient_key), self.date_shift_days(patient_key),
                        self.dates)

    def _remember_seen(self, replacer: Replacer) -> None:
        if self.store is not None and replacer.seen:
            self.store.add(replacer.seen)

    def _json(self, obj: dict[str, Any], replacer: Replacer) -> dict[str, Any]:
        out = json_walk.walk(obj, replacer)
        out.update(json_walk.markers(self.dates))
        return dict(sorted(out.items()))

    def json_dataset(self, obj: dict[str, Any], patient_key: str) -> dict[str, Any]:
        """One DICOM JSON object de-identified (a new object; ``obj`` is left as it was)."""
        replacer = self._replacer(patient_key)
        out = self._json(obj, replacer)
        self._remember_seen(replacer)
        return out

    def json_many(self, answers: Iterable[tuple[dict[str, Any], str]]) -> list[dict[str, Any]]:
        """``json_dataset`` for each (object, patient key) of a QIDO page, remembering in one batch."""
        seen: dict[str, str] = {}
        out = []
        for obj, patient_key in answers:
            replacer = self._replacer(patient_key)
            out.append(self._json(obj, replacer))
            seen.update(replacer.seen)
        if self.store is not None and seen:
            self.store.add(seen)
        return out

    @staticmethod
    def withholds(obj: dict[str, Any] | Dataset) -> bool:
        """Whether an instance is withheld from the anonymized view: Burned In Annotation (0028,0301) is YES
        (the profile cannot clean text drawn into the pixels)."""
        if isinstance(obj, Dataset):
            value: Any = obj.get("BurnedInAnnotation", "")
        else:
            value = (obj.get("00280301", {}).get("Value") or [""])[0]
        return str(value).strip().upper() == "YES"

    def dataset(self, ds: Dataset, patient_key: str) -> Dataset:
        """A de-identified copy of ``ds`` (file meta included); Pixel Data is copied unchanged."""
        replacer = self._replacer(patient_key)
        # A data set read from a file keeps the open file as ``buffer``, which cannot be copied: leave it out.
        buffer = getattr(ds, "buffer", None)
        if buffer is not None:
            ds.buffer = None  # type: ignore[attr-defined]
        try:
            out = copy.deepcopy(ds)
        finally:
            if buffer is not None:
                ds.buffer = buffer  # type: ignore[attr-defined]
        dataset_walk.walk(out, replacer)
        dataset_walk.mark(out, self.dates)
        dataset_walk.walk_file_meta(out, replacer)
        self._remember_seen(replacer)
        return out

    def part10(self, source: BinaryIO, sink: BinaryIO, patient_key: str) -> None:
        """A stored Part 10 file de-identified into ``sink``, its Pixel Data streamed from ``source``."""
        copy_deidentified(source, sink, lambda ds: self.dataset(ds, patient_key))

    # What queries may match on ---------------------------------------------------------------------------

    def kept_for_matching(self, tag: int) -> bool:
        """Whether the anonymized view answers this attribute unchanged (so matching on it reveals nothing)."""
        vr = dictionary_vr(tag)
        return vr not in ("UI", "SQ") and operation(tag, vr, self.dates) is Op.KEEP

    def removes(self, tag: int) -> bool:
        """Whether the profile removes, empties or replaces this attribute."""
        return operation(tag, dictionary_vr(tag), self.dates) not in (Op.KEEP, Op.RECURSE)
