"""The embedded issuer: signed tokens for local users, so a new install logs in without an identity provider.

Its issuer string is a constant rather than the server's URL: tokens minted by the CLI (no server, no
request host) and by any server process on the same data folder must carry the same ``iss``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy.engine import Engine

from ...settings import Settings
from ..principal import NationalId, Principal
from .claims import place_claim
from .jose import JsonWebToken
from .keys import ALGORITHM, SigningKey, load_signing_key
from .users import UserError, UserInfo, get_user

EMBEDDED_ISSUER = "urn:dicomweb:local"


class ExternalIssuerError(RuntimeError):
    """Local tokens are not accepted: the archive trusts an external identity provider."""


def user_claims(settings: Settings, user: UserInfo, now: int, ttl: int) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": EMBEDDED_ISSUER, "sub": user.username, "aud": settings.auth_audience,
        "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
    }
    paths = settings.auth_claims
    place_claim(claims, paths["roles"], list(user.roles))
    attributes = {"name": user.name, "institution": user.institution, "department": user.department,
                  "national_id": user.national_id, "national_id_issuer": user.national_id_issuer}
    for attribute, value in attributes.items():
        if value:
            place_claim(claims, paths[attribute], value)
    return claims


def issue_token(settings: Settings, key: SigningKey, user: UserInfo, ttl: int | None = None) -> tuple[str, int]:
    """A signed token for ``user`` and its lifetime in seconds."""
    lifetime = settings.auth_token_ttl_seconds if ttl is None else ttl
    if lifetime <= 0:
        raise ValueError("a token's lifetime must be a positive number of seconds")
    claims = user_claims(settings, user, int(time.time()), lifetime)
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}
    # check=False: authlib refuses claims that merely look like a US social security number (a national ID).
    token: bytes = JsonWebToken([ALGORITHM]).encode(header, claims, key.private, check=False)
    return token.decode("ascii"), lifetime


def mint_token(settings: Settings, engine: Engine, username: str, ttl: int | None = None) -> str:
    """A token for a local user, signed with the data folder's key (no password: for the CLI and tests)."""
    if settings.auth_issuer:
        raise ExternalIssuerError(f"this archive trusts tokens of {settings.auth_issuer} only; "
                                  "get a token from that identity provider")
    user = get_user(engine, username)
    if user is None:
        raise UserError(f"there is no user {username!r}")
    if user.disabled:
        raise UserError(f"user {username!r} is disabled")
    token, _ = issue_token(settings, load_signing_key(settings.data_dir), user, ttl)
    return token


def principal_of(user: UserInfo, via: str = "token") -> Principal:
    national_ids = (NationalId(user.national_id, user.national_id_issuer),) if user.national_id else ()
    return Principal(subject=user.username, roles=frozenset(user.roles), name=user.name,
                     institution=user.institution, department=user.department, national_ids=national_ids,
                     issuer=EMBEDDED_ISSUER, via=via)


def principal_for_user(engine: Engine, settings: Settings, username: str, via: str = "dimse") -> Principal | None:
    """The principal a local user acts as (the DIMSE gateway maps a peer AE to one); None: no such enabled user."""
    user = get_user(engine, username)
    if user is None or user.disabled:
        return None
    return principal_of(user, via)
