"""authlib's JOSE classes, imported once without its deprecation notice (it points at joserfc, its successor).

Everything else in this package imports them from here, so a later move to joserfc touches one module.
"""

from __future__ import annotations

import warnings

from authlib.deprecate import AuthlibDeprecationWarning  # installs an "always" filter for its notices

with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.jose import JsonWebKey, JsonWebToken, KeySet
    from authlib.jose.errors import (
        BadSignatureError,
        DecodeError,
        ExpiredTokenError,
        InvalidClaimError,
        InvalidTokenError,
        JoseError,
        MissingClaimError,
        UnsupportedAlgorithmError,
    )

__all__ = [
    "BadSignatureError",
    "DecodeError",
    "ExpiredTokenError",
    "InvalidClaimError",
    "InvalidTokenError",
    "JoseError",
    "JsonWebKey",
    "JsonWebToken",
    "KeySet",
    "MissingClaimError",
    "UnsupportedAlgorithmError",
]
