"""Token claims to a Principal and back, by the claim paths in ``settings.auth_claims``.

A path is a claim name, or dotted names into nested objects ("realm_access.roles"); a claim whose own name
contains the dots (common for namespaced claims such as "https://example.org/roles") wins over nesting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..principal import NationalId, Principal

_SEPARATORS = re.compile(r"[\s,]+")


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at ``path``; None when any step is missing."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for step in path.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def _texts(value: Any) -> list[str]:
    """A claim as a list of strings: a list as given, a string split at spaces or commas."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in _SEPARATORS.split(value) if v]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if isinstance(v, str | int) and str(v).strip()]
    return [str(value)]


def _text(value: Any) -> str:
    if value is None or isinstance(value, Mapping | list | tuple):
        return ""
    return str(value).strip()


def _national_ids(value: Any, issuer: Any) -> tuple[NationalId, ...]:
    """One ID or a list; the issuer is one value for all, or a list paired with the IDs in order."""
    values = [str(v).strip() for v in (value if isinstance(value, list | tuple) else [value])
              if isinstance(v, str | int) and str(v).strip()]
    if isinstance(issuer, list | tuple):
        issuers = [_text(i) for i in issuer]
        return tuple(NationalId(v, issuers[n] if n < len(issuers) else "") for n, v in enumerate(values))
    return tuple(NationalId(v, _text(issuer)) for v in values)


def principal_from_claims(claims: Mapping[str, Any], paths: Mapping[str, str]) -> Principal:
    """A validated token's claims as a Principal (the subject is ``sub``; unknown roles are kept as given)."""
    extra = tuple((key, str(claims[key])) for key in ("jti", "azp", "client_id") if _text(claims.get(key)))
    return Principal(
        subject=str(claims["sub"]),
        roles=frozenset(_texts(claim_at(claims, paths["roles"]))),
        name=_text(claim_at(claims, paths["name"])),
        institution=_text(claim_at(claims, paths["institution"])),
        department=_text(claim_at(claims, paths["department"])),
        national_ids=_national_ids(claim_at(claims, paths["national_id"]),
                                   claim_at(claims, paths["national_id_issuer"])),
        issuer=str(claims.get("iss", "")),
        via="token",
        extra=extra,
    )


def place_claim(claims: dict[str, Any], path: str, value: Any) -> None:
    """Put ``value`` at the dotted ``path`` (the inverse of ``claim_at``), making nested objects as needed."""
    steps = path.split(".")
    target = claims
    for step in steps[:-1]:
        target = target.setdefault(step, {})
    target[steps[-1]] = value
