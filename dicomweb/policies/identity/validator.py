"""Bearer token validation: signature through a key source, then issuer, audience, expiry and not-before.

The header is read before authlib sees the token, so that an algorithm outside the allowed list (``none``,
or HS256 "signed" with an RSA public key) and unknown key ids are refused with their own reasons, and a key
is only ever used with the algorithm family its type belongs to.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from typing import Any

from ..principal import Principal
from .claims import principal_from_claims
from .jose import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidTokenError,
    JoseError,
    JsonWebToken,
    UnsupportedAlgorithmError,
)
from .jwks import KeySource

MAX_TOKEN_LENGTH = 16 * 1024
# The key type (and EC curve) each signature algorithm needs.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    **{f"RS{b}": ("RSA", None) for b in (256, 384, 512)},
    **{f"PS{b}": ("RSA", None) for b in (256, 384, 512)},
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"), "EdDSA": ("OKP", None),
    **{f"HS{b}": ("oct", None) for b in (256, 384, 512)},
}


class TokenError(Exception):
    """A refused token. ``code`` is one of: malformed, algorithm, unknown_key, signature, expired, not_yet_valid,
    issuer, audience, disabled; ``reason`` says it in words (the 401's error_description and the audit detail)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _segment(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def read_header(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, or TokenError("malformed")."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed", f"the token is malformed: longer than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("malformed", "the token is malformed: a signed JWT has three dot-separated parts")
    try:
        header = _segment(parts[0])
    except (ValueError, UnicodeDecodeError):
        raise TokenError("malformed", "the token is malformed: its header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise TokenError("malformed", "the token is malformed: its header is not a JSON object")
    return header


class TokenValidator:
    def __init__(self, *, issuer: str, audience: str, algorithms: tuple[str, ...], leeway: int,
                 claim_paths: Mapping[str, str], keys: KeySource) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(a for a in algorithms if a != "none")
        self.leeway = leeway
        self.claim_paths = dict(claim_paths)
        self.keys = keys
        self._jwt = JsonWebToken(list(self.algorithms))

    def claims(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The validated claims; TokenError (with its reason) otherwise. May fetch keys: call off the loop."""
        header = read_header(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms or alg not in _KEY_TYPES:
            raise TokenError("algorithm", f"the token's algorithm {alg!r} is not allowed "
                                          f"(allowed: {', '.join(self.algorithms)})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("unknown_key", "the token names no signing key (no kid in its header)")
        key = self.keys.find(kid)
        if key is None:
            raise TokenError("unknown_key", f"the token is signed with an unknown key (kid {kid!r})")
        kty, curve = _KEY_TYPES[alg]
        raw = key.as_dict(is_private=False)
        if raw.get("kty") != kty or (curve and raw.get("crv") != curve) or raw.get("alg", alg) != alg:
            raise TokenError("algorithm", f"the token's algorithm {alg} does not fit its key {kid!r}")
        try:
            claims = self._jwt.decode(token, key)
        except BadSignatureError:
            raise TokenError("signature", "the token's signature does not verify") from None
        except UnsupportedAlgorithmError:
            raise TokenError("algorithm", f"the token's algorithm {alg!r} is not allowed") from None
        except (JoseError, ValueError, TypeError) as exc:
            raise TokenError("malformed", f"the token is malformed: {exc}") from None
        self._check(claims, int(time.time() if now is None else now))
        return dict(claims)

    def _check(self, claims: Any, now: int) -> None:
        issuer = claims.get("iss")
        if issuer != self.issuer:
            raise TokenError("issuer", "the token names no issuer (iss)" if issuer is None
                             else f"the token's issuer {issuer!r} is not {self.issuer!r}")
        audience = claims.get("aud")
        if self.audience not in (audience if isinstance(audience, list) else [audience]):
            raise TokenError("audience", f"the token is not for this audience ({self.audience!r})")
        if "exp" not in claims:
            raise TokenError("malformed", "the token has no expiry (exp)")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenError("malformed", "the token names no subject (sub)")
        try:
            claims.validate(now=now, leeway=self.leeway)
        except ExpiredTokenError:
            raise TokenError("expired", "the token has expired") from None
        except InvalidClaimError as exc:
            raise TokenError("malformed", f"the token's {exc.claim_name} claim is not a valid value") from None
        except InvalidTokenError:
            if isinstance(claims.get("nbf"), int | float) and claims["nbf"] > now + self.leeway:
                raise TokenError("not_yet_valid", "the token is not valid yet (nbf is in the future)") from None
            raise TokenError("not_yet_valid", "the token was issued in the future (iat)") from None

    def principal(self, token: str, now: float | None = None) -> Principal:
        return principal_from_claims(self.claims(token, now), self.claim_paths)
