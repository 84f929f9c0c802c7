"""The token validator: every refusal with its code and reason, and good tokens mapped to principals."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization

from dicomweb.policies.identity.validator import TokenError
from dicomweb.policies.principal import NationalId, Principal

from .conftest import ISSUER, TestKey, claims, ec_key, hs256_with, rsa_key, unsigned, validator


def refusal(key: TestKey, token: str, **options: object) -> tuple[str, str]:
    with pytest.raises(TokenError) as caught:
        validator(key, **options).claims(token)  # type: ignore[arg-type]
    return caught.value.code, caught.value.reason


def test_good_token_maps_to_principal(key: TestKey) -> None:
    principal = validator(key).principal(key.sign(claims(roles=["doctor", "chief"])))
    assert principal == Principal(
        subject="u-42", roles=frozenset({"doctor", "chief"}), name="House^Gregory", institution="General Hospital",
        department="Diagnostics", national_ids=(NationalId("12345678", "NATIONAL"),), issuer=ISSUER, via="token",
        extra=(("jti", "j-1"),),
    )


def test_ec_key_and_audience_list() -> None:
    key = ec_key()
    principal = validator(key).principal(key.sign(claims(aud=["account", "dicomweb"], roles="radiologist")))
    assert principal.roles == frozenset({"radiologist"})


def test_expired(key: TestKey) -> None:
    now = int(time.time())
    assert refusal(key, key.sign(claims(iat=now - 600, nbf=now - 600, exp=now - 31))) == (
        "expired", "the token has expired")
    # Within the leeway it is still good.
    assert validator(key).claims(key.sign(claims(exp=now - 20)))["sub"] == "u-42"


def test_not_yet_valid(key: TestKey) -> None:
    now = int(time.time())
    assert refusal(key, key.sign(claims(nbf=now + 120, iat=now))) == (
        "not_yet_valid", "the token is not valid yet (nbf is in the future)")
    assert validator(key).claims(key.sign(claims(nbf=now + 20)))["sub"] == "u-42"


def test_wrong_audience(key: TestKey) -> None:
    assert refusal(key, key.sign(claims(aud="other-app"))) == (
        "audience", "the token is not for this audience ('dicomweb')")
    assert refusal(key, key.sign(claims(aud=None)))[0] == "audience"


def test_wrong_issuer(key: TestKey) -> None:
    assert refusal(key, key.sign(claims(iss="https://evil.example"))) == (
        "issuer", f"the token's issuer 'https://evil.example' is not {ISSUER!r}")
    assert refusal(key, key.sign(claims(iss=None))) == ("issuer", "the token names no issuer (iss)")


def test_missing_exp_and_sub(key: TestKey) -> None:
    assert refusal(key, key.sign(claims(exp=None))) == ("malformed", "the token has no expiry (exp)")
    assert refusal(key, key.sign(claims(sub=None))) == ("malformed", "the token names no subject (sub)")


def test_tampered_payload(key: TestKey) -> None:
    token = key.sign(claims(roles=["patient"]))
    head, _, signature = token.split(".")
    forged = unsigned({}, claims(roles=["admin"])).split(".")[1]
    assert refusal(key, f"{head}.{forged}.{signature}") == ("signature", "the token's signature does not verify")


def test_signature_of_another_key(key: TestKey) -> None:
    impostor = rsa_key(kid=key.kid)  # same kid, different key
    assert refusal(key, impostor.sign(claims()))[0] == "signature"


def test_alg_none(key: TestKey) -> None:
    token = unsigned({"alg": "none", "kid": key.kid}, claims())
    assert refusal(key, token) == (
        "algorithm", "the token's algorithm 'none' is not allowed (allowed: RS256, ES256, PS256)")
    # Even if an administrator lists "none", it is never honoured.
    assert refusal(key, token, algorithms=("none", "RS256"))[0] == "algorithm"


def test_hs256_signed_with_the_public_key(key: TestKey) -> None:
    public_pem = key.private.get_public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    token = hs256_with(public_pem, claims(), key.kid)
    assert refusal(key, token)[0] == "algorithm"
    # Allowing HS256 does not help: an RSA key only ever verifies RSA algorithms.
    assert refusal(key, token, algorithms=("HS256", "RS256")) == (
        "algorithm", f"the token's algorithm HS256 does not fit its key {key.kid!r}")


def test_algorithm_outside_the_list(key: TestKey) -> None:
    assert refusal(key, key.sign(claims()), algorithms=("ES256",))[0] == "algorithm"


def test_unknown_kid(key: TestKey) -> None:
    stranger = rsa_key(kid="rotated-away")
    assert refusal(key, stranger.sign(claims())) == (
        "unknown_key", "the token is signed with an unknown key (kid 'rotated-away')")
    token = unsigned({"alg": "RS256"}, claims(), b"x")
    assert refusal(key, token) == ("unknown_key", "the token names no signing key (no kid in its header)")


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d.e", "!!!.e30.sig", "WzFd.e30.c2ln"])
def test_malformed(key: TestKey, token: str) -> None:
    assert refusal(key, token)[0] == "malformed"


def test_malformed_payload(key: TestKey) -> None:
    head = key.sign(claims()).split(".")[0]
    assert refusal(key, f"{head}.bm90IGpzb24.c2ln")[0] == "malformed"


def test_custom_claim_paths(key: TestKey) -> None:
    paths = {"roles": "realm_access.roles", "name": "display_name", "institution": "org.name",
             "department": "org.unit", "national_id": "https://example.org/nid",
             "national_id_issuer": "nid_issuer"}
    token = key.sign(claims(
        roles=None, name=None, institution=None, department=None, national_id=None, national_id_issuer=None,
        realm_access={"roles": ["researcher", "offline_access"]}, display_name="Doe^Jane",
        org={"name": "University Clinic", "unit": "Oncology"},
        **{"https://example.org/nid": ["A-1", "B-2"]}, nid_issuer=["NATIONAL", "PASSPORT"]))
    principal = validator(key, paths=paths).principal(token)
    assert (principal.roles, principal.name, principal.institution, principal.department,
            principal.national_ids) == (
        frozenset({"researcher", "offline_access"}), "Doe^Jane", "University Clinic", "Oncology",
        (NationalId("A-1", "NATIONAL"), NationalId("B-2", "PASSPORT")))


def test_roles_as_text_and_absent_attributes(key: TestKey) -> None:
    token = key.sign(claims(roles="doctor, chief lawyer", name=None, institution=None, department=None,
                            national_id=None, national_id_issuer=None, jti=None))
    principal = validator(key).principal(token)
    assert principal == Principal(subject="u-42", roles=frozenset({"doctor", "chief", "lawyer"}), issuer=ISSUER)
