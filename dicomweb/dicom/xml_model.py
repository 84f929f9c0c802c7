"""DICOM XML (PS3.19 Annex A.1, the Native DICOM Model) written from DICOM JSON."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pydicom.datadict import keyword_for_tag

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def _person_name(value: dict[str, str]) -> str:
    parts = []
    for group in ("Alphabetic", "Ideographic", "Phonetic"):
        text = value.get(group)
        if not text:
            continue
        comps = text.split("^")
        inner = "".join(
            f"<{name}>{escape(comp)}</{name}>" for name, comp in zip(_PN_COMPONENTS, comps, strict=False) if comp
        )
        parts.append(f"<{group}>{inner}</{group}>")
    return "".join(parts)


def _attribute(tag: str, body: dict[str, Any]) -> str:
    vr = body.get("vr", "UN")
    keyword = keyword_for_tag(int(tag, 16))
    attrs = f'tag="{tag}" vr="{vr}"' + (f' keyword="{keyword}"' if keyword else "")
    inner: list[str] = []
    if "BulkDataURI" in body:
        inner.append(f"<BulkData uri={quoteattr(body['BulkDataURI'])}/>")
    elif "InlineBinary" in body:
        inner.append(f"<InlineBinary>{body['InlineBinary']}</InlineBinary>")
    for i, value in enumerate(body.get("Value", []), start=1):
        if vr == "SQ":
            inner.append(f'<Item number="{i}">{_dataset(value)}</Item>')
        elif vr == "PN":
            inner.append(f'<PersonName number="{i}">{_person_name(value or {})}</PersonName>')
        elif value is None:
            inner.append(f'<Value number="{i}"/>')
        else:
            inner.append(f'<Value number="{i}">{escape(str(value))}</Value>')
    return f"<DicomAttribute {attrs}>{''.join(inner)}</DicomAttribute>"


def _dataset(ds: dict[str, Any]) -> str:
    return "".join(_attribute(tag, body) for tag, body in sorted(ds.items()))


def json_to_xml(ds: dict[str, Any]) -> str:
    body = _dataset(ds)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="{NAMESPACE}">{body}</NativeDicomModel>\n'
