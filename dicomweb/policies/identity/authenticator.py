"""The authenticator: a bearer token to a Principal, with a short cache so a viewer's thousand frame
requests verify one signature, not a thousand."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import anyio.to_thread
from sqlalchemy.engine import Engine

from ...settings import Settings, SettingsError
from ..principal import Principal
from .claims import principal_from_claims
from .issuer import EMBEDDED_ISSUER
from .jwks import KeySource, RemoteJwks, StaticKeys
from .keys import SigningKey, load_signing_key
from .users import get_user
from .validator import TokenError, TokenValidator

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 4096


class Authenticator:
    """Validates tokens of one issuer: the embedded one (``signing_key`` set) or an external provider.

    Tokens of local users are also checked against the user table, so removing or disabling a user ends
    its access within the cache's minute rather than at the token's expiry.
    """

    def __init__(self, settings: Settings, validator: TokenValidator, *, engine: Engine | None = None,
                 signing_key: SigningKey | None = None, cache_seconds: float = CACHE_SECONDS,
                 cache_entries: int = CACHE_ENTRIES) -> None:
        self.settings = settings
        self.validator = validator
        self.engine = engine
        self.signing_key = signing_key
        self.cache_seconds = cache_seconds
        self.cache_entries = cache_entries
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def issuer(self) -> str:
        return self.validator.issuer

    @property
    def embedded(self) -> bool:
        return self.signing_key is not None

    def cached(self, token: str) -> Principal | None:
        with self._lock:
            entry = self._cache.get(token)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._cache[token]
                return None
            self._cache.move_to_end(token)
            return entry[1]

    def authenticate_sync(self, token: str) -> Principal:
        """The token's principal; TokenError or KeysUnavailable otherwise. Blocking (key fetch, user table)."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        claims = self.validator.claims(token)
        principal = principal_from_claims(claims, self.validator.claim_paths)
        if self.embedded and self.engine is not None:
            user = get_user(self.engine, principal.subject)
            if user is None:
                raise TokenError("user", f"user {principal.subject!r} no longer exists")
            if user.disabled:
                raise TokenError("user", f"user {principal.subject!r} is disabled")
        # Kept for at most a minute, and never past the token's own expiry.
        lifetime = min(self.cache_seconds, float(claims["exp"]) - time.time())
        if lifetime > 0:
            with self._lock:
                self._cache[token] = (time.monotonic() + lifetime, principal)
                self._cache.move_to_end(token)
                while len(self._cache) > self.cache_entries:
                    self._cache.popitem(last=False)
        return principal

    async def authenticate(self, token: str) -> Principal:
        """As ``authenticate_sync``; a cache miss runs in a thread (it may fetch keys or read the user table)."""
        principal = self.cached(token)
        if principal is not None:
            return principal
        return await anyio.to_thread.run_sync(self.authenticate_sync, token)


def build_authenticator(settings: Settings, engine: Engine | None = None) -> Authenticator:
    """The embedded issuer when ``auth_issuer`` is empty (its key is made on first use), else the external one."""
    def validator(issuer: str, keys: KeySource) -> TokenValidator:
        return TokenValidator(issuer=issuer, audience=settings.auth_audience, algorithms=settings.auth_algorithms,
                              leeway=settings.auth_leeway_seconds, claim_paths=settings.auth_claims, keys=keys)

    if settings.auth_issuer:
        remote = RemoteJwks(settings.auth_jwks_url, issuer=settings.auth_issuer)
        return Authenticator(settings, validator(settings.auth_issuer, remote), engine=engine)
    if settings.auth_jwks_url:
        raise SettingsError("auth_jwks_url is set but auth_issuer is not: name the provider's issuer too")
    signing_key = load_signing_key(settings.data_dir)
    return Authenticator(settings, validator(EMBEDDED_ISSUER, StaticKeys(signing_key.jwks)), engine=engine,
                         signing_key=signing_key)
