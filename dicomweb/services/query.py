"""The query model of QIDO-RS (PS3.18 10.6) and the future DIMSE C-FIND: typed matching keys in, one SQL query out.

A ``Query`` is a level, a list of ``MatchKey`` (parsed from the PS3.4 C.2.2.2 value syntax by ``parse_key``),
the attributes to return, and limit/offset. ``search`` turns it into ONE SELECT: the matching keys and an
optional policy predicate (authorization) all sit in its WHERE clause, computed attributes are correlated
subqueries, and attributes without an index column are matched inside the stored DICOM JSON of the entity's
representative instance (its first stored one) with the database's JSON functions.

Matching rules, exactly (the reference matcher in tests/qido implements the same words):
- Universal (empty value): no condition. Empty value (``""``): the attribute is empty or absent.
- Single value: equality after trimming spaces; TM compares normalised times (``1010`` equals ``101000``);
  IS/US and other numbers compare as numbers.
- List (values separated by ``\\``; for UIDs also ``,``): any of the values matches.
- Wildcard (``*`` any run, ``?`` one character) for AE CS LO LT PN SH ST UC UR UT; case-sensitive.
- Range for DA, TM, DT: ``a-b``, ``a-``, ``-b``, inclusive; a partial upper time/datetime covers its whole
  unit (``-10`` is up to 10:59:59.999999); empty values never match a range. DT ignores time zone suffixes.
- Person names (indexed: PatientName, ReferringPhysicianName): with ``pn_case_insensitive`` (default),
  matching is on NFKC case-folded component groups: a value without ``=`` matches if it matches the
  Alphabetic, Ideographic or Phonetic group; with ``=`` each non-empty group of the query must match the
  same group. Trailing ``^`` and spaces are insignificant. Case-sensitive mode matches the whole stored value.
  ``fuzzy`` (fuzzymatching=true): the query is split into words at ``^``, ``=``, spaces, ``*``, ``?`` and
  ``,``; every word must be a case-insensitive prefix of some name component (components split at ``^``
  and spaces) in some group.
- Sequence: an item matches when all its keys match; the sequence matches when any item does.
- Non-indexed attributes are matched in the representative instance's JSON, case-sensitively.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import count
from typing import Any, Literal

from pydicom.datadict import dictionary_VR, keyword_for_tag
from sqlalchemy import (
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from ..dicom.json_model import BASE_MARKER
from ..index.db import reading
from ..index.models import Instance, Patient, Series, Study

Level = Literal["study", "series", "instance"]
LEVELS: tuple[Level, ...] = ("study", "series", "instance")
RANK = {"study": 0, "series": 1, "instance": 2}

WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
NUMBER_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
TEXT_VRS = WILDCARD_VRS | {"AS", "DA", "DT", "TM", "UI"}
UNMATCHABLE_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT"}

_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_DT = re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class QueryError(ValueError):
    """The query cannot be run; the message names the attribute and says why."""


class Kind(StrEnum):
    UNIVERSAL = "universal"
    EMPTY = "empty"
    SINGLE = "single"
    LIST = "list"
    WILDCARD = "wildcard"
    RANGE = "range"
    SEQUENCE = "sequence"


@dataclass(frozen=True)
class MatchKey:
    """One matching key: the attribute, its VR, how to match and with what."""

    tag: int
    vr: str
    kind: Kind
    values: tuple[str, ...] = ()  # SINGLE/WILDCARD: one value; LIST: each (single or wildcard)
    low: str = ""  # RANGE bounds, empty when open
    high: str = ""
    items: tuple[MatchKey, ...] = ()  # SEQUENCE: the keys an item must all match

    @property
    def name(self) -> str:
        return keyword_for_tag(self.tag) or f"{self.tag:08X}"


@dataclass
class Query:
    level: Level
    keys: list[MatchKey] = field(default_factory=list)
    include: frozenset[int] = frozenset()  # extra attributes to return (includefield)
    include_all: bool = False
    limit: int = 1000
    offset: int = 0
    fuzzy: bool = False
    pn_case_insensitive: bool = True
    # Which levels' default attributes the answer carries (PS3.18 table 10.6.3-2: /series adds study ones).
    return_levels: tuple[Level, ...] = ()


@dataclass
class SearchResult:
    datasets: list[dict[str, Any]]
    more: bool  # more matches exist after ``limit``
    ignored: list[str]  # matching keys not supported at this level (answered with a Warning)
    # With an ``anonymized`` predicate: per dataset, whether it is to be de-identified, and its patient key.
    anonymized: list[bool] = field(default_factory=list)
    patient_keys: list[str] = field(default_factory=list)


# -- the index: which attribute lives in which column --------------------------------------------------------
@dataclass(frozen=True)
class Indexed:
    table: str
    column: str
    vr: str
    level: Level


INDEXED: dict[int, Indexed] = {
    0x00100010: Indexed("patient", "patient_name", "PN", "study"),
    0x00100020: Indexed("patient", "patient_id", "LO", "study"),
    0x00100021: Indexed("patient", "issuer_of_patient_id", "LO", "study"),
    0x00100030: Indexed("patient", "patient_birth_date", "DA", "study"),
    0x00100040: Indexed("patient", "patient_sex", "CS", "study"),
    0x0020000D: Indexed("study", "study_instance_uid", "UI", "study"),
    0x00080020: Indexed("study", "study_date", "DA", "study"),
    0x00080030: Indexed("study", "study_time", "TM", "study"),
    0x00080050: Indexed("study", "accession_number", "SH", "study"),
    0x00200010: Indexed("study", "study_id", "SH", "study"),
    0x00081030: Indexed("study", "study_description", "LO", "study"),
    0x00080090: Indexed("study", "referring_physician_name", "PN", "study"),
    0x00080060: Indexed("series", "modality", "CS", "series"),
    0x0020000E: Indexed("series", "series_instance_uid", "UI", "series"),
    0x00200011: Indexed("series", "series_number", "IS", "series"),
    0x0008103E: Indexed("series", "series_description", "LO", "series"),
    0x00180015: Indexed("series", "body_part_examined", "CS", "series"),
    0x00400244: Indexed("series", "performed_procedure_step_start_date", "DA", "series"),
    0x00400245: Indexed("series", "performed_procedure_step_start_time", "TM", "series"),
    0x00080018: Indexed("instance", "sop_instance_uid", "UI", "instance"),
    0x00080016: Indexed("instance", "sop_class_uid", "UI", "instance"),
    0x00200013: Indexed("instance", "instance_number", "IS", "instance"),
}
# Folded component-group columns of the indexed person names (written at ingest by ``pn_search_columns``).
PN_GROUP_COLUMNS = {"patient_name": "patient_name", "referring_physician_name": "referring_physician"}
GROUP_SUFFIXES = ("alphabetic", "ideographic", "phonetic")

MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY = 0x00080061, 0x00080062
STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES = 0x00201206, 0x00201208, 0x00201209
SPECIFIC_CHARACTER_SET, INSTANCE_AVAILABILITY, RETRIEVE_URL = 0x00080005, 0x00080056, 0x00081190
TIMEZONE_OFFSET, REQUEST_ATTRIBUTES = 0x00080201, 0x00400275
COMPUTED_LEVEL: dict[int, Level] = {
    MODALITIES_IN_STUDY: "study", SOP_CLASSES_IN_STUDY: "study", STUDY_SERIES: "study", STUDY_INSTANCES: "study",
    SERIES_INSTANCES: "series",
}
NOT_MATCHABLE = {STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES, SPECIFIC_CHARACTER_SET, INSTANCE_AVAILABILITY,
                 RETRIEVE_URL}

# Default return attributes (PS3.18 tables 10.6.3-3, -4, -5); the rest of a level's attributes for ``all``.
DEFAULTS: dict[Level, tuple[int, ...]] = {
    "study": (0x00080020, 0x00080030, 0x00080050, MODALITIES_IN_STUDY, 0x00080090, 0x00100010, 0x00100020,
              0x00100030, 0x00100040, 0x0020000D, 0x00200010, STUDY_SERIES, STUDY_INSTANCES, TIMEZONE_OFFSET),
    "series": (0x00080060, 0x0008103E, 0x0020000E, 0x00200011, SERIES_INSTANCES, 0x00400244, 0x00400245,
               REQUEST_ATTRIBUTES, TIMEZONE_OFFSET),
    "instance": (0x00080016, 0x00080018, 0x00200013, 0x00280010, 0x00280011, 0x00280100, 0x00280008,
                 TIMEZONE_OFFSET),
}
LEVEL_EXTRAS: dict[Level, frozenset[int]] = {
    "study": frozenset({0x00081030, 0x00080051, 0x00081048, 0x00081060, 0x00081032, 0x00081080, 0x00081110,
                        0x00321033, SOP_CLASSES_IN_STUDY}),
    "series": frozenset({0x00080021, 0x00080031, 0x00081050, 0x00181030, 0x00081070, 0x00180015, 0x00185100,
                         0x00200052, 0x00200060, 0x00400253, 0x00400254, 0x00080070, 0x00080080, 0x00081010,
                         0x00081090, 0x00181000, 0x00181020}),
    "instance": frozenset(),
}


def attribute_level(tag: int) -> Level | None:
    """The level an attribute belongs to, where the archive knows it (None: unknown, any level)."""
    if tag in INDEXED:
        return INDEXED[tag].level
    if tag in COMPUTED_LEVEL:
        return COMPUTED_LEVEL[tag]
    if tag >> 16 == 0x0010:
        return "study"
    for level in ("study", "series"):
        if tag in LEVEL_EXTRAS[level] or tag in DEFAULTS[level]:  # type: ignore[index]
            return level  # type: ignore[return-value]
    return None


# -- normalisation, shared with ingest and the reference matcher -----------------------------------------------
def fold(text: str) -> str:
    """Case- and width-insensitive form of a name: NFKC, then Unicode case folding."""
    return unicodedata.normalize("NFKC", text).casefold()


def trim_group(text: str) -> str:
    return text.strip().rstrip("^ ")


def pn_groups(value: str) -> tuple[str, str, str]:
    """A person name's three component groups, folded and trimmed."""
    parts = [trim_group(fold(p)) for p in value.split("=")[:3]]
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def pn_search_columns(prefix: str, value: str) -> dict[str, str]:
    """The folded group columns ingest writes beside an indexed person name."""
    return {f"{prefix}_{suffix}": group[:330] for suffix, group in zip(GROUP_SUFFIXES, pn_groups(value), strict=True)}


def time_key(value: str) -> str:
    """A TM value as HHMMSS.FFFFFF so that text order is time order (``1010`` -> ``101000.000000``)."""
    value = value.replace(":", "")
    return (value + "000000")[:13] if "." in value else (value + "000000")[:6] + ".000000"


def time_upper(value: str) -> str:
    """The last instant a partial upper TM bound covers (``10`` -> ``105959.999999``)."""
    return (value + "999999")[:13] if "." in value else value + "235959"[len(value):] + ".999999"


def datetime_lower(value: str) -> str:
    value = _strip_zone(value)
    return value + "00000101000000.000000"[len(value):]


def datetime_upper(value: str) -> str:
    value = _strip_zone(value)
    return value + "99991231235959.999999"[len(value):]


def _strip_zone(value: str) -> str:
    return re.sub(r"[+-]\d{4}$", "", value)


def number_forms(value: str) -> tuple[str, ...]:
    """The texts a number may have in DICOM JSON (``5`` and ``5.0`` for an integral query)."""
    number = float(value)
    if number.is_integer():
        return (str(int(number)), str(number))
    return (repr(number),)


def fuzzy_words(value: str) -> list[str]:
    return [w for w in re.split(r"[\^= *?,]+", fold(value)) if w]


# -- parsing the PS3.4 value syntax ------------------------------------------------------------------------------
def tag_vr(tag: int) -> str:
    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    return vr.split(" or ")[0]


def _check(name: str, vr: str, value: str) -> None:
    pattern = {"DA": _DA, "TM": _TM, "DT": _DT}.get(vr)
    if pattern is not None and value and not pattern.fullmatch(value):
        raise QueryError(f"{name}: {value!r} is not a valid {vr} value")
    if vr in NUMBER_VRS and not _NUMBER.fullmatch(value):
        raise QueryError(f"{name}: {value!r} is not a number")


def _single(name: str, vr: str, value: str) -> tuple[Kind, str]:
    value = value.strip()
    if "*" in value or "?" in value:
        if vr not in WILDCARD_VRS:
            raise QueryError(f"{name}: wildcards (* and ?) cannot be used with VR {vr}")
        return Kind.WILDCARD, value
    _check(name, vr, value)
    return Kind.SINGLE, value


def parse_key(tag: int, raw: str, items: tuple[MatchKey, ...] = ()) -> MatchKey:
    """A matching key from its value in PS3.4 C.2.2.2 syntax; raises QueryError when it cannot be matched."""
    vr = tag_vr(tag)
    name = keyword_for_tag(tag) or f"{tag:08X}"
    if vr == "SQ":
        if raw.strip():
            raise QueryError(f"{name} is a sequence: match on its items' attributes ({name}.Keyword=value)")
        return MatchKey(tag, vr, Kind.SEQUENCE if items else Kind.UNIVERSAL, items=items)
    if vr in UNMATCHABLE_VRS:
        raise QueryError(f"{name} (VR {vr}) cannot be used for matching")
    raw = raw.strip()
    if raw == "":
        return MatchKey(tag, vr, Kind.UNIVERSAL)
    if raw == '""':
        return MatchKey(tag, vr, Kind.EMPTY)
    bounds = _split_range(raw, vr, name)
    if bounds is not None:
        low, high = bounds
        if not low and not high:
            raise QueryError(f"{name}: a range needs at least one bound")
        _check(name, vr, low)
        _check(name, vr, high)
        if vr == "DA" and low and high and low > high:
            raise QueryError(f"{name}: the range {raw!r} ends before it starts")
        return MatchKey(tag, vr, Kind.RANGE, low=low, high=high)
    separators = r"[\\,]" if vr == "UI" else r"\\"
    parts = [p for p in re.split(separators, raw) if p.strip()]  # empty list members add nothing
    if not parts:
        return MatchKey(tag, vr, Kind.UNIVERSAL)
    if len(parts) > 1:
        values = tuple(_single(name, vr, p)[1] for p in parts)
        return MatchKey(tag, vr, Kind.LIST, values=values)
    kind, value = _single(name, vr, parts[0])
    return MatchKey(tag, vr, kind, values=(value,))


def _split_range(raw: str, vr: str, name: str) -> tuple[str, str] | None:
    """The bounds of a DA/TM/DT range, or None when ``raw`` is a single value."""
    if vr not in ("DA", "TM", "DT") or "-" not in raw:
        return None
    if vr != "DT":
        low, _, high = raw.partition("-")
        return low.strip(), high.strip()
    if _DT.fullmatch(raw):
        return None  # a single DT with a negative time zone offset
    for i, ch in enumerate(raw):
        if ch == "-":
            low, high = raw[:i].strip(), raw[i + 1:].strip()
            if all(not b or _DT.fullmatch(b) for b in (low, high)):
                return low, high
    raise QueryError(f"{name}: {raw!r} is not a valid DT range")


# -- SQL ------------------------------------------------------------------------------------------------------------
T_PATIENT = Patient.__table__  # type: ignore[attr-defined]
T_STUDY = Study.__table__  # type: ignore[attr-defined]
T_SERIES = Series.__table__  # type: ignore[attr-defined]
T_INSTANCE = Instance.__table__  # type: ignore[attr-defined]
TABLES = {"patient": T_PATIENT, "study": T_STUDY, "series": T_SERIES, "instance": T_INSTANCE}
INT_COLUMNS = {"series_number", "instance_number"}


class _Sql:
    """Condition builders for one dialect (SQLite: GLOB and json_each; PostgreSQL: LIKE and jsonb)."""

    def __init__(self, dialect: str, query: Query) -> None:
        self.pg = dialect == "postgresql"
        self.query = query
        self._names = count()

    # text
    def pattern(self, column: Any, value: str) -> ColumnElement[bool]:
        if self.pg:
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            result: ColumnElement[bool] = column.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")
            return result
        return column.op("GLOB", is_comparison=True)(value.replace("[", "[[]"))  # type: ignore[no-any-return]

    def time_expr(self, column: Any) -> Any:
        """SQL twin of ``time_key``."""
        bare = func.replace(column, ":", "")
        padded = bare.concat("000000")
        return case((bare.like("%.%"), func.substr(padded, 1, 13)), else_=func.substr(padded, 1, 6).concat(".000000"))

    def text_value(self, column: Any, key: MatchKey, value: str, kind: Kind) -> ColumnElement[bool]:
        if kind == Kind.WILDCARD:
            return self.pattern(column, value)
        if key.vr == "TM":
            return and_(column != "", self.time_expr(column) == time_key(value))
        if key.vr in NUMBER_VRS:
            return column.in_(number_forms(value))  # type: ignore[no-any-return]
        return column == value  # type: ignore[no-any-return]

    def text(self, column: Any, key: MatchKey) -> ColumnElement[bool]:
        """A key over a text expression that is '' when the attribute is empty or absent."""
        if key.kind == Kind.UNIVERSAL:
            return true()
        if key.kind == Kind.EMPTY:
            return column == ""  # type: ignore[no-any-return]
        if key.kind == Kind.RANGE:
            conds = [column != ""]
            if key.vr == "DA":
                conds += [column >= key.low] if key.low else []
                conds += [column <= key.high] if key.high else []
            elif key.vr == "TM":
                expr = self.time_expr(column)
                conds += [expr >= time_key(key.low)] if key.low else []
                conds += [expr <= time_upper(key.high)] if key.high else []
            else:
                conds += [column >= datetime_lower(key.low)] if key.low else []
                conds += [column <= datetime_upper(key.high)] if key.high else []
            return and_(*conds)
        return or_(*(self.text_value(column, key, v, _value_kind(v, key)) for v in key.values))

    def integer(self, column: Any, key: MatchKey) -> ColumnElement[bool]:
        if key.kind == Kind.UNIVERSAL:
            return true()
        if key.kind == Kind.EMPTY:
            return column.is_(None)  # type: ignore[no-any-return]
        numbers = [float(v) for v in key.values]
        whole = [int(n) for n in numbers if n.is_integer()]
        return column.in_(whole) if whole else false()  # type: ignore[no-any-return]

    # person names
    def person_name(self, raw: Any, groups: tuple[Any, Any, Any], key: MatchKey) -> ColumnElement[bool]:
        if key.kind in (Kind.UNIVERSAL, Kind.EMPTY):
            return self.text(raw, key)
        if self.query.fuzzy:
            return or_(*(self.fuzzy(groups, v) for v in key.values))
        if not self.query.pn_case_insensitive:
            return self.text(raw, key)
        return or_(*(self.pn_value(groups, v, folded=True) for v in key.values))

    def pn_value(self, groups: tuple[Any, Any, Any], value: str, folded: bool) -> ColumnElement[bool]:
        prepared = fold(value) if folded else value

        def one(column: Any, part: str) -> ColumnElement[bool]:
            part = trim_group(part)
            if "*" in part or "?" in part:
                return self.pattern(column, part)
            return column == part  # type: ignore[no-any-return]

        if "=" not in prepared:
            return or_(*(one(g, prepared) for g in groups))
        parts = prepared.split("=")[:3]
        return and_(*(one(g, p) for g, p in zip(groups, parts, strict=False) if p.strip()))

    def fuzzy(self, groups: tuple[Any, Any, Any], value: str) -> ColumnElement[bool]:
        words = fuzzy_words(value)
        conds = []
        for word in words:
            conds.append(or_(*(self.prefix(g, lead, word) for g in groups for lead in ("", "*^", "* "))))
        return and_(*conds) if conds else true()

    def prefix(self, column: Any, lead: str, word: str) -> ColumnElement[bool]:
        """column matches ``lead`` (wildcards) + the literal ``word`` + anything."""
        if self.pg:
            literal_word = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = lead.replace("*", "%") + literal_word + "%"
            result: ColumnElement[bool] = column.like(pattern, escape="\\")
            return result
        literal_word = "".join(f"[{c}]" if c in "*?[" else c for c in word)
        return column.op("GLOB", is_comparison=True)(lead + literal_word + "*")  # type: ignore[no-any-return]

    # JSON (attributes without a column)
    def json_key(self, source: Any, key: MatchKey) -> ColumnElement[bool]:
        if key.kind == Kind.UNIVERSAL:
            return true()
        tag = f"{key.tag:08X}"
        elements = self._elements(source, tag, text=key.vr not in ("PN", "SQ"))
        if key.kind == Kind.SEQUENCE:
            inner = and_(*(self.json_key(elements.c.value, item) for item in key.items))
            return exists(select(literal(1)).select_from(elements).where(inner))
        if key.kind == Kind.EMPTY:
            return not_(exists(select(literal(1)).select_from(elements).where(self._present(elements.c.value, key))))
        if key.vr == "PN":
            groups = tuple(self._pn_group(elements.c.value, g) for g in ("Alphabetic", "Ideographic", "Phonetic"))
            if key.kind == Kind.RANGE:
                return false()
            cond = or_(*(self.pn_value(groups, v, folded=False) for v in key.values))  # type: ignore[arg-type]
        else:
            cond = self.text(self._as_text(elements.c.value), key)
        return exists(select(literal(1)).select_from(elements).where(cond))

    def _elements(self, source: Any, tag: str, text: bool) -> Any:
        name = f"qv{next(self._names)}"
        if self.pg:
            document = source if getattr(source.type, "_is_jsonb", False) else cast(source, JSONB)
            array = document.op("->")(tag).op("->")("Value")
            fn = func.jsonb_array_elements(array)
            alias = fn.table_valued("value", name=name)
            alias.c.value.type = JSONB()
            return alias
        return func.json_each(source, f'$."{tag}".Value').table_valued("value", name=name)

    def _as_text(self, value: Any) -> Any:
        if self.pg:
            return func.coalesce(value.op("#>>")(literal_column("'{}'")), "")
        return func.coalesce(cast(value, Text()), "")

    def _pn_group(self, value: Any, group: str) -> Any:
        if self.pg:
            return func.coalesce(value.op("->>")(group), "")
        return func.coalesce(func.json_extract(value, f"$.{group}"), "")

    def _present(self, value: Any, key: MatchKey) -> ColumnElement[bool]:
        if key.vr == "PN":
            return or_(*(self._pn_group(value, g) != "" for g in ("Alphabetic", "Ideographic", "Phonetic")))
        return self._as_text(value) != ""  # type: ignore[no-any-return]


def _value_kind(value: str, key: MatchKey) -> Kind:
    return Kind.WILDCARD if key.vr in WILDCARD_VRS and ("*" in value or "?" in value) else Kind.SINGLE


# -- the one query --------------------------------------------------------------------------------------------------
def _representative(level: Level) -> Any:
    """The metadata of the entity's first stored instance (what non-indexed attributes are matched in)."""
    if level == "instance":
        return T_INSTANCE.c.metadata_json
    inner = T_INSTANCE.alias("rep_i")
    stmt = select(inner.c.metadata_json)
    if level == "series":
        stmt = stmt.where(inner.c.series_fk == T_SERIES.c.id)
    else:
        rep_s = T_SERIES.alias("rep_s")
        stmt = stmt.join(rep_s, inner.c.series_fk == rep_s.c.id).where(rep_s.c.study_fk == T_STUDY.c.id)
    # Explicit correlation: the subquery also sits inside EXISTS (json_each ...), where auto-correlation stops.
    outer = T_SERIES if level == "series" else T_STUDY
    return stmt.order_by(inner.c.id).limit(1).correlate(outer).scalar_subquery()


def _aggregate(pg: bool, column: Any) -> Any:
    distinct = column.distinct()
    # CS and UI values hold no commas; SQLite's DISTINCT aggregate takes no separator, so ',' serves both.
    return func.string_agg(distinct, ",") if pg else func.group_concat(distinct)


def _computed(tag: int, pg: bool, anonymized: ColumnElement[bool] | None = None) -> Any:
    s2, i2 = T_SERIES.alias("c_s"), T_INSTANCE.alias("c_i")
    in_study: list[ColumnElement[bool]] = [s2.c.study_fk == T_STUDY.c.id]
    if anonymized is not None:
        # Series an anonymized view withholds (burned-in annotation) are not counted either.
        in_study.append(or_(s2.c.burned_in_annotation.is_(False), not_(anonymized)))
    if tag == MODALITIES_IN_STUDY:
        return select(_aggregate(pg, s2.c.modality)).where(*in_study).scalar_subquery()
    if tag == SOP_CLASSES_IN_STUDY:
        return (select(_aggregate(pg, i2.c.sop_class_uid)).select_from(i2.join(s2, i2.c.series_fk == s2.c.id))
                .where(*in_study).scalar_subquery())
    if tag == STUDY_SERIES:
        return select(func.count()).select_from(s2).where(*in_study).scalar_subquery()
    if tag == STUDY_INSTANCES:
        return (select(func.count()).select_from(i2.join(s2, i2.c.series_fk == s2.c.id))
                .where(*in_study).scalar_subquery())
    return select(func.count()).select_from(i2).where(i2.c.series_fk == T_SERIES.c.id).scalar_subquery()


def _computed_match(sql: _Sql, key: MatchKey) -> ColumnElement[bool]:
    s2, i2 = T_SERIES.alias("m_s"), T_INSTANCE.alias("m_i")
    if key.tag == MODALITIES_IN_STUDY:
        if key.kind == Kind.EMPTY:
            return not_(exists(select(literal(1)).select_from(s2).where(s2.c.study_fk == T_STUDY.c.id,
                                                                       s2.c.modality != "")))
        return exists(select(literal(1)).select_from(s2).where(s2.c.study_fk == T_STUDY.c.id,
                                                               sql.text(s2.c.modality, key)))
    joined = i2.join(s2, i2.c.series_fk == s2.c.id)
    if key.kind == Kind.EMPTY:
        return false()  # every instance has a SOP Class UID
    return exists(select(literal(1)).select_from(joined).where(s2.c.study_fk == T_STUDY.c.id,
                                                               sql.text(i2.c.sop_class_uid, key)))


def _condition(sql: _Sql, key: MatchKey, rep: Any) -> ColumnElement[bool]:
    if key.tag in (MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY):
        return _computed_match(sql, key)
    indexed = INDEXED.get(key.tag)
    if indexed is None or key.vr != indexed.vr:
        return sql.json_key(rep, key)
    column = TABLES[indexed.table].c[indexed.column]
    if indexed.column in INT_COLUMNS:
        return sql.integer(column, key)
    if indexed.vr == "PN":
        table = TABLES[indexed.table]
        prefix = PN_GROUP_COLUMNS[indexed.column]
        groups = tuple(table.c[f"{prefix}_{s}"] for s in GROUP_SUFFIXES)
        return sql.person_name(column, groups, key)  # type: ignore[arg-type]
    return sql.text(column, key)


def supported_at(level: Level, tag: int) -> bool:
    """Whether a key on ``tag`` can restrict a ``level`` query (not lower-level or only-returned attributes)."""
    if tag in NOT_MATCHABLE:
        return False
    owner = attribute_level(tag)
    return owner is None or RANK[owner] <= RANK[level]


def build_statement(
    query: Query, dialect: str, policy_filter: ColumnElement[bool] | None = None,
    anonymized: ColumnElement[bool] | None = None,
) -> Any:
    """The one statement; ``policy_filter`` restricts it to what the caller may see (inside WHERE, so limit,
    offset and counts stay true), ``anonymized`` marks the rows the caller sees de-identified only."""
    sql = _Sql(dialect, query)
    level = query.level
    rep = _representative(level)
    returned = returned_tags(query)
    columns: list[Any] = [T_PATIENT, T_STUDY]
    source: Any = T_STUDY.join(T_PATIENT, T_STUDY.c.patient_fk == T_PATIENT.c.id)
    order: list[Any] = [T_STUDY.c.study_date.desc(), T_STUDY.c.id.desc()]
    if RANK[level] >= 1:
        source = source.join(T_SERIES, T_SERIES.c.study_fk == T_STUDY.c.id)
        columns.append(T_SERIES)
        order += [T_SERIES.c.series_number.is_(None), T_SERIES.c.series_number, T_SERIES.c.id]
    if level == "instance":
        source = source.join(T_INSTANCE, T_INSTANCE.c.series_fk == T_SERIES.c.id)
        columns.append(T_INSTANCE)
        order += [T_INSTANCE.c.instance_number.is_(None), T_INSTANCE.c.instance_number, T_INSTANCE.c.id]
    labels = {T_PATIENT: "p", T_STUDY: "st", T_SERIES: "se", T_INSTANCE: "i"}
    # Only the columns answers are built from: other features add columns of their own to these tables.
    wanted = {(i.table, i.column) for i in INDEXED.values()}
    selected = [t.c[name].label(f"{labels[t]}_{name}") for t in columns for name in
                ["id", *sorted(col for table, col in wanted if TABLES[table] is t)]]
    for tag in (MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY, STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES):
        if tag in returned:
            selected.append(_computed(tag, sql.pg, anonymized).label(f"c_{tag:08X}"))
    if anonymized is not None:
        selected += [anonymized.label("pol_anonymized"), T_PATIENT.c.patient_key.label("pol_patient_key")]
    if needs_metadata(query, returned):
        selected.append(rep.label("rep_metadata"))
    conditions = [_condition(sql, key, rep) for key in query.keys if supported_at(level, key.tag)]
    if policy_filter is not None:
        conditions.append(policy_filter)
    if anonymized is not None and RANK[level] >= 1:
        conditions.append(or_(T_SERIES.c.burned_in_annotation.is_(False), not_(anonymized)))
    stmt = select(*selected).select_from(source)
    if sql.pg and level == "study" and policy_filter is not None:
        # Under a policy, the newest studies are walked and each tested until the page is full: a scope that
        # opens 2% of the archive tests 50 studies per answer. Picking the page's study ids first, from the study
        # table alone (the patient joined only for a key on it), lets PostgreSQL walk the date index that carries
        # the columns the scopes test (an index-only walk) and read the rows of the answered studies only. The
        # order ends with the unique id, so the page is the same. Limit and offset are written into the SQL: a
        # prepared statement's generic plan, not knowing the page holds ~100 ids, would hash-join whole tables.
        patient_keys = any(INDEXED[k.tag].table == "patient" for k in query.keys
                           if k.tag in INDEXED and supported_at(level, k.tag) and k.kind != Kind.UNIVERSAL)
        page = select(T_STUDY.c.id).select_from(source if patient_keys else T_STUDY).where(*conditions)
        page = page.order_by(*order).limit(literal_column(str(int(query.limit) + 1))).offset(
            literal_column(str(int(query.offset)))).correlate(None)
        return stmt.where(T_STUDY.c.id.in_(page)).order_by(*order)
    return stmt.where(*conditions).order_by(*order).limit(query.limit + 1).offset(query.offset)


def returned_tags(query: Query) -> set[int]:
    tags: set[int] = set()
    for level in query.return_levels or (query.level,):
        tags.update(DEFAULTS[level])
        if query.include_all:
            tags.update(LEVEL_EXTRAS[level])
    tags.update(query.include)
    tags.update(k.tag for k in query.keys)
    # The unique keys of the levels above identify where an answer sits (as C-FIND returns them).
    tags.update((0x0020000D, 0x0020000E, 0x00080018)[: RANK[query.level] + 1])
    return tags


def needs_metadata(query: Query, returned: set[int]) -> bool:
    if query.level == "instance" or query.include_all:
        return True
    known = set(INDEXED) | set(COMPUTED_LEVEL) | NOT_MATCHABLE
    return any(tag not in known for tag in returned)


def search(
    engine: Engine, query: Query, policy_filter: ColumnElement[bool] | None = None, base_url: str | None = None,
    anonymized: ColumnElement[bool] | None = None,
) -> SearchResult:
    """Run ``query`` as one SQL statement (blocking: call it from a worker thread)."""
    stmt = build_statement(query, engine.dialect.name, policy_filter, anonymized)
    with reading(engine) as conn:
        rows = conn.execute(stmt).mappings().all()
    more = len(rows) > query.limit
    ignored = [k.name for k in query.keys if not supported_at(query.level, k.tag)]
    returned = returned_tags(query)
    datasets = [to_dataset(row, query, returned, base_url) for row in rows[: query.limit]]
    if anonymized is None:
        return SearchResult(datasets, more, ignored)
    kept = rows[: query.limit]
    return SearchResult(datasets, more, ignored, [bool(r["pol_anonymized"]) for r in kept],
                        [str(r["pol_patient_key"]) for r in kept])


# -- rows to DICOM JSON ----------------------------------------------------------------------------------------
def _person_name(value: str) -> dict[str, Any]:
    if not value:
        return {"vr": "PN"}
    groups = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), value.split("="), strict=False))
    return {"vr": "PN", "Value": [{k: v for k, v in groups.items() if v}]}


def _column_value(vr: str, value: Any) -> dict[str, Any]:
    if vr == "PN":
        return _person_name(value or "")
    if value is None or value == "":
        return {"vr": vr}
    if vr in ("IS", "US"):
        return {"vr": vr, "Value": [int(value)]}
    return {"vr": vr, "Value": [str(value)]}


def _split_list(text: str | None) -> list[str]:
    return sorted({v for v in (text or "").split(",") if v})


def _level_of_row(tag: int, query: Query) -> bool:
    """Whether ``tag`` belongs to what this answer carries (all levels up to the query level)."""
    owner = attribute_level(tag)
    return owner is None or RANK[owner] <= RANK[query.level]


def _from_metadata(metadata: dict[str, Any], query: Query, returned: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, element in metadata.items():
        if "BulkDataURI" in element or "InlineBinary" in element:
            continue  # search answers carry no bulk data
        tag = int(key, 16)
        if (tag in returned and _level_of_row(tag, query)) or (query.include_all and _in_all(tag, query)):
            out[key] = element
    return out


def _in_all(tag: int, query: Query) -> bool:
    if query.level == "instance":
        return True
    owner = attribute_level(tag)
    return owner is not None and RANK[owner] <= RANK[query.level]


def to_dataset(row: Any, query: Query, returned: set[int], base_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    metadata_text = row.get("rep_metadata")
    if metadata_text:
        metadata = json.loads(metadata_text.replace(BASE_MARKER, base_url or ""))
        out.update(_from_metadata(metadata, query, returned))
    prefixes = {"patient": "p", "study": "st", "series": "se", "instance": "i"}
    for tag, indexed in INDEXED.items():
        # Instance attributes of an instance answer come from its own metadata (exactly as stored).
        from_column = not (query.level == "instance" and indexed.level == "instance")
        if tag in returned and _level_of_row(tag, query) and from_column:
            out[f"{tag:08X}"] = _column_value(indexed.vr, row[f"{prefixes[indexed.table]}_{indexed.column}"])
    for tag in (MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY):
        if tag in returned:
            values = _split_list(row[f"c_{tag:08X}"])
            out[f"{tag:08X}"] = {"vr": "CS" if tag == MODALITIES_IN_STUDY else "UI", **({"Value": values} if values
                                                                                       else {})}
    for tag in (STUDY_SERIES, STUDY_INSTANCES, SERIES_INSTANCES):
        if tag in returned and _level_of_row(tag, query):
            out[f"{tag:08X}"] = {"vr": "IS", "Value": [int(row[f"c_{tag:08X}"])]}
    out["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    if query.level == "instance" or INSTANCE_AVAILABILITY in returned:
        out["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
    if base_url is not None:
        path = f"{base_url}/studies/{row['st_study_instance_uid']}"
        if query.level != "study":
            path += f"/series/{row['se_series_instance_uid']}"
        if query.level == "instance":
            path += f"/instances/{row['i_sop_instance_uid']}"
        out["00081190"] = {"vr": "UR", "Value": [path]}
    return dict(sorted(out.items()))


__all__ = ["Kind", "MatchKey", "Query", "QueryError", "SearchResult", "parse_key", "search"]
