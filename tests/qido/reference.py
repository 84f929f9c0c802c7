"""A plain-Python matcher written from the rules in dicomweb/services/query.py's docstring (PS3.4 C.2.2.2).

It works on the archive as the test generated it (no SQL), so the differential test compares two
independent answers to the same query.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from dicomweb.services.query import Kind, MatchKey, Query

# Attributes the archive keeps as columns, per level (for the "is it supported at this level" rule).
STUDY_COLUMNS = {0x00100010, 0x00100020, 0x00100030, 0x00100040, 0x0020000D, 0x00080020, 0x00080030, 0x00080050,
                 0x00200010, 0x00081030, 0x00080090}
SERIES_COLUMNS = {0x00080060, 0x0020000E, 0x00200011, 0x0008103E, 0x00400244, 0x00400245}
INSTANCE_COLUMNS = {0x00080018, 0x00080016, 0x00200013}
INTEGER = {0x00200011, 0x00200013}
COLUMN_PN = {0x00100010, 0x00080090}


@dataclass
class Item:
    """One stored instance as the test wrote it: attribute tag -> list of string values (or item dicts)."""

    attrs: dict[int, list[Any]]
    order: int  # insertion order = instance id order

    def first(self, tag: int) -> str:
        values = self.attrs.get(tag) or [""]
        return str(values[0])


@dataclass
class Entity:
    uid: str
    row_id: int
    instances: list[Item] = field(default_factory=list)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _trim(text: str) -> str:
    return text.strip().rstrip("^ ")


def _groups(value: str, folded: bool) -> list[str]:
    parts = value.split("=")[:3]
    parts += [""] * (3 - len(parts))
    return [_trim(_fold(p)) if folded else p for p in parts]


def _wild(pattern: str, text: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def _time(value: str) -> str:
    value = value.replace(":", "")
    if "." in value:
        return (value + "000000")[:13]
    return (value + "000000")[:6] + ".000000"


def _time_high(value: str) -> str:
    if "." in value:
        return (value + "999999")[:13]
    return value + "235959"[len(value):] + ".999999"


def _zone(value: str) -> str:
    return re.sub(r"[+-]\d{4}$", "", value)


def _text_match(key: MatchKey, value: str) -> bool:
    """One text value against a key (an absent attribute is the empty string)."""
    if key.kind == Kind.UNIVERSAL:
        return True
    if key.kind == Kind.EMPTY:
        return value == ""
    if key.kind == Kind.RANGE:
        if value == "":
            return False
        if key.vr == "DA":
            return (not key.low or value >= key.low) and (not key.high or value <= key.high)
        if key.vr == "TM":
            return (not key.low or _time(value) >= _time(key.low)) and (
                not key.high or _time(value) <= _time_high(key.high))
        low = _zone(key.low) + "00000101000000.000000"[len(_zone(key.low)):]
        high = _zone(key.high) + "99991231235959.999999"[len(_zone(key.high)):]
        return (not key.low or value >= low) and (not key.high or value <= high)
    for candidate in key.values:
        if "*" in candidate or "?" in candidate:
            if _wild(candidate, value):
                return True
        elif key.vr == "TM":
            if value and _time(value) == _time(candidate):
                return True
        elif value == candidate:
            return True
    return False


def _pn_one(query: str, groups: list[str], folded: bool) -> bool:
    query = _fold(query) if folded else query
    def one(part: str, group: str) -> bool:
        part = _trim(part)
        return _wild(part, group) if ("*" in part or "?" in part) else group == part
    if "=" not in query:
        return any(one(query, g) for g in groups)
    return all(one(p, g) for p, g in zip(query.split("=")[:3], groups, strict=False) if p.strip())


def _fuzzy(query: str, groups: list[str]) -> bool:
    words = [w for w in re.split(r"[\^= *?,]+", _fold(query)) if w]
    components = [c for g in groups for c in re.split(r"[\^ ]", g)]
    return all(any(c.startswith(w) for c in components) for w in words)


def _pn_match(key: MatchKey, raw: str, q: Query, indexed: bool) -> bool:
    if key.kind in (Kind.UNIVERSAL, Kind.EMPTY):
        return _text_match(key, raw)
    if indexed and q.fuzzy:
        return any(_fuzzy(v, _groups(raw, True)) for v in key.values)
    if indexed and not q.pn_case_insensitive:
        return _text_match(key, raw)
    folded = indexed
    return any(_pn_one(v, _groups(raw, folded), folded) for v in key.values)


def _json_match(key: MatchKey, attrs: dict[int, list[Any]], q: Query) -> bool:
    values = attrs.get(key.tag) or []
    if key.kind == Kind.UNIVERSAL:
        return True
    if key.kind == Kind.SEQUENCE:
        return any(all(_json_match(k, item, q) for k in key.items) for item in values)
    if key.kind == Kind.EMPTY:
        return all(str(v) == "" for v in values)
    if key.vr == "PN":
        return any(_pn_match(key, str(v), q, indexed=False) for v in values)
    return any(_text_match(key, str(v)) for v in values)


def matches(key: MatchKey, q: Query, study: Entity, series: Entity | None, instance: Item | None) -> bool:
    """Whether one candidate (a study, a series with its study, an instance with both) matches ``key``."""
    level_item = instance or (series.instances[0] if series else study.instances[0])
    if key.tag == 0x00080061:  # ModalitiesInStudy: any series of the study
        modalities = {i.first(0x00080060) for i in study.instances}
        if key.kind == Kind.EMPTY:
            return all(m == "" for m in modalities)
        return any(_text_match(key, m) for m in modalities)
    if key.tag == 0x00080062:
        return key.kind != Kind.EMPTY and any(_text_match(key, i.first(0x00080016)) for i in study.instances)
    if key.tag in INTEGER:
        raw = level_item.first(key.tag)
        if key.kind == Kind.UNIVERSAL:
            return True
        if key.kind == Kind.EMPTY:
            return raw == ""
        return raw != "" and any(float(v).is_integer() and int(float(v)) == int(raw) for v in key.values)
    if key.tag in STUDY_COLUMNS | SERIES_COLUMNS | INSTANCE_COLUMNS:
        value = level_item.first(key.tag)
        if key.tag in COLUMN_PN:
            return _pn_match(key, value, q, indexed=True)
        return _text_match(key, value)
    return _json_match(key, level_item.attrs, q)


def supported(level: str, tag: int) -> bool:
    rank = {"study": 0, "series": 1, "instance": 2}[level]
    # + OperatorsName, StationName, RequestAttributesSequence: series attributes without a column
    series_level = SERIES_COLUMNS | {0x00081070, 0x00081010, 0x00400275}
    if (tag in series_level and rank < 1) or (tag in INSTANCE_COLUMNS and rank < 2):
        return False
    return tag not in {0x00201206, 0x00201208, 0x00201209}


def _number_order(item: Item, tag: int) -> tuple[bool, int]:
    raw = item.first(tag)
    return (raw == "", int(raw) if raw else 0)


def search(
    q: Query, studies: list[Entity], series_of: dict[str, list[Entity]]
) -> list[tuple[str, ...]]:
    """The matching (study, series, instance) UIDs in the archive's documented order, after offset/limit."""
    keys = [k for k in q.keys if supported(q.level, k.tag)]
    found: list[tuple[Any, ...]] = []
    for study in studies:
        study_order = (-int(study.instances[0].first(0x00080020) or 0), -study.row_id)
        if q.level == "study":
            if all(matches(k, q, study, None, None) for k in keys):
                found.append((study_order, (study.uid,)))
            continue
        for series in series_of[study.uid]:
            series_order = (*study_order, *_number_order(series.instances[0], 0x00200011), series.row_id)
            if q.level == "series":
                if all(matches(k, q, study, series, None) for k in keys):
                    found.append((series_order, (study.uid, series.uid)))
                continue
            for inst in series.instances:
                if all(matches(k, q, study, series, inst) for k in keys):
                    order = (*series_order, *_number_order(inst, 0x00200013), inst.order)
                    found.append((order, (study.uid, series.uid, inst.first(0x00080018))))
    found.sort(key=lambda pair: pair[0])
    return [uids for _, uids in found[q.offset:q.offset + q.limit]]
