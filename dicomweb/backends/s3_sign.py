"""AWS Signature Version 4 for the one request the frame path sends: a GET of an object, with a Range.

Written for that request alone (no query string, no body), so it costs one SHA-256 and one HMAC: the
derived signing key is kept per day, region and secret. Checked against botocore's signer in the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import UTC, datetime

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class GetSigner:
    """Headers that sign ``GET path`` with ``Range`` for one region's S3 endpoint."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self.region = region
        self.service = service
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        with self._lock:
            key = self._keys.get((secret, day))
            if key is None:
                key = _hmac(f"AWS4{secret}".encode(), day)
                for part in (self.region, self.service, "aws4_request"):
                    key = _hmac(key, part)
                self._keys = {(secret, day): key}  # yesterday's key is of no more use
            return key

    def headers(self, host: str, path: str, range_value: str, access_key: str, secret: str,
                token: str | None = None, now: datetime | None = None) -> dict[str, str]:
        """``host`` as the Host header will carry it; ``path`` already URI-encoded (S3 encodes it once)."""
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = {"host": host, "range": range_value, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": stamp}
        if token:
            signed["x-amz-security-token"] = token
        names = ";".join(signed)  # already in sorted order
        canonical = "\n".join(["GET", path, "", *(f"{k}:{v}" for k, v in signed.items()), "", names, EMPTY_SHA256])
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(secret, day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {"Range": range_value, "X-Amz-Content-SHA256": EMPTY_SHA256, "X-Amz-Date": stamp,
                   "Authorization": f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={names}, "
                                    f"Signature={signature}"}
        if token:
            headers["X-Amz-Security-Token"] = token
        return headers
