"""Identities (issue 6): bearer tokens (embedded issuer or an external OIDC provider) to principals.

The names below load on first use, so the command line does not import crypto for unrelated commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .authenticator import Authenticator, build_authenticator
    from .issuer import EMBEDDED_ISSUER, ExternalIssuerError, mint_token, principal_for_user
    from .jwks import KeysUnavailable
    from .middleware import AuthMiddleware, client_address
    from .routes import auth_routes
    from .users import UserError, UserInfo, add_user, get_user, list_users, remove_user, verify_password
    from .validator import TokenError

_EXPORTS = {
    "Authenticator": "authenticator", "build_authenticator": "authenticator",
    "EMBEDDED_ISSUER": "issuer", "ExternalIssuerError": "issuer", "mint_token": "issuer",
    "principal_for_user": "issuer", "KeysUnavailable": "jwks", "AuthMiddleware": "middleware",
    "client_address": "middleware", "auth_routes": "routes", "UserError": "users", "UserInfo": "users",
    "add_user": "users", "get_user": "users", "list_users": "users", "remove_user": "users",
    "verify_password": "users", "TokenError": "validator",
}
__all__ = [
    "EMBEDDED_ISSUER", "AuthMiddleware", "Authenticator", "ExternalIssuerError", "KeysUnavailable", "TokenError",
    "UserError", "UserInfo", "add_user", "auth_routes", "build_authenticator", "client_address", "get_user",
    "list_users", "mint_token", "principal_for_user", "remove_user", "verify_password",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
