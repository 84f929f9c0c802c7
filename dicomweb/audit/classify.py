"""What an HTTP request did, for its audit record: the action, a detail, and the resource it names."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SEARCH_LEVELS = frozenset({"studies", "series", "instances"})
# Query parameters that carry credentials: never written to the audit log.
SECRET_PARAMS = frozenset({"access_token", "id_token", "refresh_token", "client_secret", "password"})
# WADO-URI (PS3.18 9): the object's UIDs are query parameters.
WADO_URI_UIDS = {"studyUID": "study", "seriesUID": "series", "objectUID": "instance"}


@dataclass(frozen=True)
class Classified:
    action: str
    detail: str = ""
    study: str = ""
    series: str = ""
    instance: str = ""


def relative(path: str, base_path: str) -> str:
    base = base_path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        return path[len(base):] or "/"
    return path


def _dicomweb(method: str, segments: list[str], query_string: str) -> Classified | None:
    if segments == ["wado"]:
        wado = {WADO_URI_UIDS[k]: v for k, v in parse_qsl(query_string) if k in WADO_URI_UIDS}
        return Classified("retrieve", "wado-uri", **wado)
    if not segments or segments[0] not in SEARCH_LEVELS:
        return None
    uids: dict[str, str] = {}
    for level, key in (("studies", "study"), ("series", "series"), ("instances", "instance")):
        if level in segments:
            at = segments.index(level)
            if at + 1 < len(segments):
                uids[key] = segments[at + 1]
    if method == "DELETE":
        return Classified("delete", "", **uids)
    if method == "POST":
        return Classified("store", "", **uids) if segments[0] == "studies" else None
    if method not in ("GET", "HEAD"):
        return None
    last = segments[-1]
    if last in SEARCH_LEVELS:
        return Classified("query", last, **uids)
    if "bulkdata" in segments:
        detail = "bulkdata"
    elif last in ("metadata", "rendered", "thumbnail"):
        detail = last
    elif "frames" in segments:
        detail = "frames"
    else:
        detail = "instances"
    return Classified("retrieve", detail, **uids)


def classify(method: str, path: str, base_path: str, query_string: str = "") -> Classified:
    """The action of ``method`` on ``path`` (PS3.18 resources under ``base_path``; WADO-URI also at the root)."""
    rel = relative(path, base_path)
    segments = [unquote(s) for s in rel.strip("/").split("/") if s]
    head = segments[0] if segments else ""
    if segments[:2] == ["auth", "token"]:
        return Classified("login")
    if head == "audit":
        return Classified("audit-read", "/".join(segments[1:]))
    if head == "admin":
        if len(segments) > 1 and segments[1] in ("policy", "grants", "care-relationships", "research-shares"):
            return Classified("policy-change" if method in WRITE_METHODS else "policy-read", segments[1])
        return Classified("admin", "/".join(segments[1:]))
    found = _dicomweb(method, segments, query_string)
    return found if found is not None else Classified("other")


def strip_secrets(query_string: str) -> str:
    """The query string without credential parameters, otherwise as sent."""
    kept = [part for part in query_string.split("&")
            if part and unquote(part.split("=", 1)[0]).lower() not in SECRET_PARAMS]
    return "&".join(kept)
