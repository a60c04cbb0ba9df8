from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from grip_asgi import _signature
from grip_asgi._config import FASTLY_FANOUT_PUBLIC_KEY, GripConfig, parse_grip_uri
from grip_asgi._errors import GripConfigError
from grip_asgi._signature import (
    MAX_TOKEN_LENGTH,
    ProxyVerifier,
    SigCheck,
    SigFailure,
    SigVerifier,
    check_sig,
    validate_sig,
)

NOW = 1_700_000_000.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(
    payload: dict[str, Any] | bytes,
    secret: str | bytes = "secret",
    header: dict[str, Any] | bytes | None = None,
) -> str:
    """An HS256-signed token, built by hand so tests can bend every part of it."""
    if header is None:
        header = {"alg": "HS256", "typ": "JWT"}
    head = b64url(header if isinstance(header, bytes) else json.dumps(header).encode())
    body = b64url(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    signing_input = f"{head}.{body}"
    key = secret.encode() if isinstance(secret, str) else secret
    return f"{signing_input}.{b64url(hmac.digest(key, signing_input.encode(), 'sha256'))}"


def claims(**extra: Any) -> dict[str, Any]:
    return {"iss": "pushpin", "exp": NOW + 3600, **extra}


def public_pem(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
    password: bytes | None = None,
) -> str:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode()


@dataclasses.dataclass(frozen=True)
class Keys:
    ec_private: ec.EllipticCurvePrivateKey
    other_ec_private: ec.EllipticCurvePrivateKey
    rsa_private: rsa.RSAPrivateKey

    @property
    def ec_pem(self) -> str:
        return public_pem(self.ec_private)

    @property
    def rsa_pem(self) -> str:
        return public_pem(self.rsa_private)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        ec_private=ec.generate_private_key(ec.SECP256R1()),
        other_ec_private=ec.generate_private_key(ec.SECP256R1()),
        rsa_private=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


# --- Conformance vectors (spec §7.2) -------------------------------------------------------

# Pushpin src/core/jwttest.cpp: signature-only tokens, without exp.
PUSHPIN_HEAD_AND_PAYLOAD = "eyJhbGciOiAiSFMyNTYiLCAidHlwIjogIkpXVCJ9.eyJmb28iOiAiYmFyIn0"
PUSHPIN_TOKEN = PUSHPIN_HEAD_AND_PAYLOAD + ".oBia0Fph39FwQWv0TS7Disg4qa0aFa8qpMaYDrIXZqs"
PUSHPIN_BINARY_TOKEN = PUSHPIN_HEAD_AND_PAYLOAD + ".-eLxyGEITnd6IP4WvGJx9CmIOt--Qcs3LB6wblJ7KXI"
PUSHPIN_BINARY_KEY = bytes([0x01, 0x61, 0x80, 0xFE])


@pytest.mark.parametrize(
    ("token", "key", "reason"),
    [
        (PUSHPIN_TOKEN, "secret", SigFailure.MISSING_EXP),
        (PUSHPIN_TOKEN, b"secret", SigFailure.MISSING_EXP),
        (PUSHPIN_TOKEN, "wrong", SigFailure.BAD_SIGNATURE),
        (PUSHPIN_BINARY_TOKEN, PUSHPIN_BINARY_KEY, SigFailure.MISSING_EXP),
        (PUSHPIN_BINARY_TOKEN, "secret", SigFailure.BAD_SIGNATURE),
        (PUSHPIN_TOKEN, PUSHPIN_BINARY_KEY, SigFailure.BAD_SIGNATURE),
    ],
)
def test_pushpin_vectors_verify_the_signature_but_lack_exp(
    token: str, key: str | bytes, reason: SigFailure
) -> None:
    result = check_sig(token, key, now=NOW)
    assert not result.ok
    assert result.reason is reason
    # The payload is only exposed once the signature verified.
    expected_claims = {"foo": "bar"} if reason is SigFailure.MISSING_EXP else None
    assert result.claims == expected_claims


def test_pushpin_binary_key_through_a_grip_url() -> None:
    config = parse_grip_uri("http://localhost:5561/?verify-key=base64:AWGA/g==")
    assert config.verify_key == PUSHPIN_BINARY_KEY
    result = ProxyVerifier([config]).verify(PUSHPIN_BINARY_TOKEN, NOW)
    assert result.reason is SigFailure.MISSING_EXP


def test_pygripcontrol_vector() -> None:
    now = time.time()
    good = make_token({"iss": "realm", "exp": int(now) + 3600}, "key")
    assert validate_sig(good, "key")  # now defaults to the clock
    assert validate_sig(good, "key", "realm")
    assert validate_sig(good, "key", now=now)
    assert not validate_sig(good, "wrong_key", now=now)
    expired = make_token({"iss": "realm", "exp": int(now) - 3600}, "key")
    assert not validate_sig(expired, "key", now=now)


def test_pushpin_default_key_is_verified_without_warnings() -> None:
    # PyJWT warns for 8-byte HMAC keys such as Pushpin's "changeme"; warnings fail this suite.
    token = make_token(claims(), "changeme")
    assert check_sig(token, "changeme", "pushpin", now=NOW) == SigCheck(
        True, None, {"iss": "pushpin", "exp": NOW + 3600}
    )


def test_hs256_token_signed_by_pyjwt() -> None:
    secret = "a-secret-of-at-least-thirty-two-bytes!"
    token = jwt.encode(claims(), secret, algorithm="HS256")
    assert check_sig(token, secret, "pushpin", now=NOW).ok


# --- ES256 and RS256 -----------------------------------------------------------------------


def jwk_of(private: Any) -> dict[str, Any]:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)


KEY_FORMS: dict[str, Callable[[Any], Any]] = {
    "pem-str": public_pem,
    "pem-bytes": lambda private: public_pem(private).encode(),
    "pem-indented": lambda private: "\n  " + public_pem(private),
    "private-pem": private_pem,
    "jwk-dict": jwk_of,
    "jwk-json": lambda private: json.dumps(jwk_of(private)),
    "jwk-json-bytes": lambda private: json.dumps(jwk_of(private)).encode(),
    "jwk-with-alg": lambda private: {
        **jwk_of(private),
        "alg": "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "RS256",
    },
}


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
@pytest.mark.parametrize("form", KEY_FORMS)
def test_asymmetric_round_trip(keys: Keys, alg: str, form: str) -> None:
    private = keys.ec_private if alg == "ES256" else keys.rsa_private
    token = jwt.encode(claims(), private, algorithm=alg)
    verifier = SigVerifier(KEY_FORMS[form](private), "pushpin")
    assert verifier.algorithm == alg
    result = verifier.check(token, NOW)
    assert result == SigCheck(True, None, claims())
    assert verifier.check(token, NOW + 3600).reason is SigFailure.EXPIRED


def test_fastly_fanout_key_in_both_published_forms() -> None:
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": "CKo5A1ebyFcnmVV8SE5On-8G81JyBjSvcrx4VLetWCg",
        "y": "7gwJqaU6N8TP88--twjkwoB36f-pT3QsmI46nPhjO7M",
    }
    token = jwt.encode(claims(), ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    for key in (FASTLY_FANOUT_PUBLIC_KEY, jwk):
        verifier = SigVerifier(key)
        assert verifier.algorithm == "ES256"
        assert verifier.check(token, NOW).reason is SigFailure.BAD_SIGNATURE


def test_es256_signature_bits_are_checked(keys: Keys) -> None:
    token = jwt.encode(claims(), keys.ec_private, algorithm="ES256")
    signing_input, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    flipped = raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]
    zero = bytes(64)
    for bad in (flipped, zero, raw + b"\0", raw[:-1]):
        result = check_sig(f"{signing_input}.{b64url(bad)}", keys.ec_pem, now=NOW)
        assert result.reason is SigFailure.BAD_SIGNATURE


# --- Attacks -------------------------------------------------------------------------------

Case = Callable[[Keys], tuple[str, Any, "str | None"]]


def _header(**fields: Any) -> dict[str, Any]:
    return {"typ": "JWT", **fields}


def _alg_none(with_signature: bool) -> Case:
    def case(k: Keys) -> tuple[str, Any, str | None]:
        token = make_token(claims(), "secret", _header(alg="none"))
        if not with_signature:
            token = token.rpartition(".")[0] + "."
        return token, "secret", None

    return case


def _huge(k: Keys) -> tuple[str, Any, str | None]:
    # Validly signed, so only its size can fail it.
    return make_token(claims(pad="x" * MAX_TOKEN_LENGTH)), "secret", None


def _valid(k: Keys) -> str:
    return make_token(claims())


ATTACKS: dict[str, tuple[Case, SigFailure]] = {
    "alg none, with a signature": (_alg_none(True), SigFailure.UNSUPPORTED_ALGORITHM),
    "alg none, no signature": (_alg_none(False), SigFailure.UNSUPPORTED_ALGORITHM),
    "alg NONE": (
        lambda k: (make_token(claims(), header=_header(alg="NONE")), "secret", None),
        SigFailure.UNSUPPORTED_ALGORITHM,
    ),
    "alg HS384": (
        lambda k: (make_token(claims(), header=_header(alg="HS384")), "secret", None),
        SigFailure.UNSUPPORTED_ALGORITHM,
    ),
    "alg is a list": (
        lambda k: (make_token(claims(), header=_header(alg=["HS256"])), "secret", None),
        SigFailure.UNSUPPORTED_ALGORITHM,
    ),
    "no alg": (
        lambda k: (make_token(claims(), header=_header()), "secret", None),
        SigFailure.MALFORMED,
    ),
    "HS256 wrong key": (
        lambda k: (make_token(claims(), "wrong"), "secret", None),
        SigFailure.BAD_SIGNATURE,
    ),
    "HS256 signed with an empty key": (
        lambda k: (make_token(claims(), ""), "secret", None),
        SigFailure.BAD_SIGNATURE,
    ),
    "expired": (
        lambda k: (make_token(claims(exp=NOW - 1)), "secret", None),
        SigFailure.EXPIRED,
    ),
    "expires now": (
        lambda k: (make_token(claims(exp=NOW)), "secret", None),
        SigFailure.EXPIRED,
    ),
    "no exp": (
        lambda k: (make_token({"iss": "pushpin"}), "secret", None),
        SigFailure.MISSING_EXP,
    ),
    "exp as a string": (
        lambda k: (make_token(claims(exp=str(NOW + 3600))), "secret", None),
        SigFailure.INVALID_EXP,
    ),
    "exp as a bool": (
        lambda k: (make_token(claims(exp=True)), "secret", None),
        SigFailure.INVALID_EXP,
    ),
    "exp null": (
        lambda k: (make_token(claims(exp=None)), "secret", None),
        SigFailure.INVALID_EXP,
    ),
    "exp Infinity": (
        lambda k: (make_token(b'{"exp": Infinity}'), "secret", None),
        SigFailure.INVALID_EXP,
    ),
    "exp NaN": (
        lambda k: (make_token(b'{"exp": NaN}'), "secret", None),
        SigFailure.INVALID_EXP,
    ),
    "exp 1e400": (
        lambda k: (make_token(b'{"exp": 1e400}'), "secret", None),
        SigFailure.INVALID_EXP,
    ),
    "exp beyond any float": (
        lambda k: (make_token(b'{"exp": 1' + b"0" * 400 + b"}"), "secret", None),
        SigFailure.INVALID_EXP,
    ),
    "nbf in the future": (
        lambda k: (make_token(claims(nbf=NOW + 60)), "secret", None),
        SigFailure.NOT_YET_VALID,
    ),
    "nbf as a string": (
        lambda k: (make_token(claims(nbf="0")), "secret", None),
        SigFailure.INVALID_NBF,
    ),
    "wrong iss": (
        lambda k: (make_token(claims(iss="evil")), "secret", "pushpin"),
        SigFailure.WRONG_ISSUER,
    ),
    "iss in a list": (
        lambda k: (make_token(claims(iss=["pushpin"])), "secret", "pushpin"),
        SigFailure.WRONG_ISSUER,
    ),
    "missing iss when required": (
        lambda k: (make_token({"exp": NOW + 60}), "secret", "pushpin"),
        SigFailure.WRONG_ISSUER,
    ),
    "HS256 with the ES256 PEM as secret": (
        lambda k: (make_token(claims(), k.ec_pem), k.ec_pem, None),
        SigFailure.ALGORITHM_MISMATCH,
    ),
    "HS256 with the RS256 PEM as secret": (
        lambda k: (make_token(claims(), k.rsa_pem), k.rsa_pem, None),
        SigFailure.ALGORITHM_MISMATCH,
    ),
    "HS256 with the PEM bytes as secret": (
        lambda k: (make_token(claims(), k.ec_pem.encode()), k.ec_pem.encode(), None),
        SigFailure.ALGORITHM_MISMATCH,
    ),
    "HS256 with the JWK JSON as secret": (
        lambda k: (
            make_token(claims(), json.dumps(jwk_of(k.ec_private))),
            jwk_of(k.ec_private),
            None,
        ),
        SigFailure.ALGORITHM_MISMATCH,
    ),
    "ES256 signed by another EC key": (
        lambda k: (jwt.encode(claims(), k.other_ec_private, algorithm="ES256"), k.ec_pem, None),
        SigFailure.BAD_SIGNATURE,
    ),
    "RS256 token vs an EC key": (
        lambda k: (jwt.encode(claims(), k.rsa_private, algorithm="RS256"), k.ec_pem, None),
        SigFailure.ALGORITHM_MISMATCH,
    ),
    "ES256 token vs an RSA key": (
        lambda k: (jwt.encode(claims(), k.ec_private, algorithm="ES256"), k.rsa_pem, None),
        SigFailure.ALGORITHM_MISMATCH,
    ),
    "ES256 token vs a secret": (
        lambda k: (jwt.encode(claims(), k.ec_private, algorithm="ES256"), "secret", None),
        SigFailure.ALGORITHM_MISMATCH,
    ),
    "RS256 with a tampered payload": (
        lambda k: (
            _swap_payload(jwt.encode(claims(), k.rsa_private, algorithm="RS256"), claims(iss="x")),
            k.rsa_pem,
            None,
        ),
        SigFailure.BAD_SIGNATURE,
    ),
    "leading space": (lambda k: (" " + _valid(k), "secret", None), SigFailure.MALFORMED),
    "trailing newline": (lambda k: (_valid(k) + "\n", "secret", None), SigFailure.MALFORMED),
    "space inside": (
        lambda k: (_valid(k).replace(".", ". ", 1), "secret", None),
        SigFailure.MALFORMED,
    ),
    "base64 padding": (
        lambda k: (_valid(k).replace(".", "=.", 1), "secret", None),
        SigFailure.MALFORMED,
    ),
    "standard base64 alphabet": (
        lambda k: (_valid(k).replace("e", "+", 1), "secret", None),
        SigFailure.MALFORMED,
    ),
    "non-ASCII": (lambda k: (_valid(k) + "é", "secret", None), SigFailure.MALFORMED),
    "garbage": (lambda k: ("not a token", "secret", None), SigFailure.MALFORMED),
    "empty string": (lambda k: ("", "secret", None), SigFailure.MALFORMED),
    "two segments": (
        lambda k: (_valid(k).rpartition(".")[0], "secret", None),
        SigFailure.MALFORMED,
    ),
    "four segments": (lambda k: (_valid(k) + ".abc", "secret", None), SigFailure.MALFORMED),
    "empty payload": (
        lambda k: (_valid(k).split(".")[0] + "..abc", "secret", None),
        SigFailure.MALFORMED,
    ),
    "non-JSON header": (
        lambda k: (make_token(claims(), header=b"not json"), "secret", None),
        SigFailure.MALFORMED,
    ),
    "header not an object": (
        lambda k: (make_token(claims(), header=b'["HS256"]'), "secret", None),
        SigFailure.MALFORMED,
    ),
    "header not UTF-8": (
        lambda k: (make_token(claims(), header=b'{"alg": "\xff"}'), "secret", None),
        SigFailure.MALFORMED,
    ),
    "header nested too deep": (
        lambda k: (make_token(claims(), header=b'{"x": ' + b"[" * 3000), "secret", None),
        SigFailure.MALFORMED,
    ),
    "header of impossible base64 length": (
        lambda k: ("abcde." + _valid(k).split(".", 1)[1], "secret", None),
        SigFailure.MALFORMED,
    ),
    "signature of impossible base64 length": (
        lambda k: (_valid(k).rpartition(".")[0] + ".abcde", "secret", None),
        SigFailure.MALFORMED,
    ),
    "signed payload not JSON": (
        lambda k: (make_token(b"not json"), "secret", None),
        SigFailure.MALFORMED,
    ),
    "signed payload not an object": (
        lambda k: (make_token(b"[1]"), "secret", None),
        SigFailure.MALFORMED,
    ),
    "huge token": (_huge, SigFailure.MALFORMED),
    "empty str key": (
        lambda k: (make_token(claims(), ""), "", None),
        SigFailure.NO_KEY,
    ),
    "empty bytes key": (
        lambda k: (make_token(claims(), b""), b"", None),
        SigFailure.NO_KEY,
    ),
    "no key": (lambda k: (make_token(claims(), ""), None, None), SigFailure.NO_KEY),
}


def _swap_payload(token: str, payload: dict[str, Any]) -> str:
    head, _, signature = token.split(".")
    return f"{head}.{b64url(json.dumps(payload).encode())}.{signature}"


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_is_rejected(keys: Keys, name: str) -> None:
    case, reason = ATTACKS[name]
    token, key, iss = case(keys)
    result = check_sig(token, key, iss, now=NOW)
    assert (result.ok, result.reason) == (False, reason)
    assert not result
    assert not validate_sig(token, key, iss, now=NOW)
    assert ProxyVerifier([GripConfig("http://proxy", verify_key=key, verify_iss=iss)]).verify(
        token, NOW
    ) == SigCheck(False, reason, result.claims)


def test_the_attack_cases_start_from_a_valid_token(keys: Keys) -> None:
    # Guards the table above: its building blocks do verify when nothing is bent.
    assert check_sig(_valid(keys), "secret", "pushpin", now=NOW).ok
    assert check_sig(make_token(claims(nbf=NOW)), "secret", now=NOW).ok
    assert check_sig(
        jwt.encode(claims(), keys.rsa_private, algorithm="RS256"), keys.rsa_pem, now=NOW
    )


def test_claims_are_read_only(keys: Keys) -> None:
    result = check_sig(make_token(claims(sub="x")), "secret", now=NOW)
    assert result.claims is not None
    with pytest.raises(TypeError):
        result.claims["sub"] = "y"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ok = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("exp", "leeway", "ok"),
    [(NOW - 5, 10, True), (NOW - 10, 10, False), (NOW + 1, 0, True)],
)
def test_leeway_on_exp(exp: float, leeway: float, ok: bool) -> None:
    assert check_sig(make_token(claims(exp=exp)), "secret", now=NOW, leeway=leeway).ok is ok


def test_leeway_on_nbf() -> None:
    token = make_token(claims(nbf=NOW + 5))
    assert check_sig(token, "secret", now=NOW, leeway=10).ok
    assert check_sig(token, "secret", now=NOW, leeway=1).reason is SigFailure.NOT_YET_VALID


@pytest.mark.parametrize("leeway", [-1, float("nan"), float("inf")])
def test_leeway_must_be_sane(leeway: float) -> None:
    with pytest.raises(ValueError, match="leeway"):
        SigVerifier("secret", leeway=leeway)
    with pytest.raises(ValueError, match="leeway"):
        ProxyVerifier([], leeway=leeway)


@given(st.text(max_size=300))
def test_arbitrary_text_is_rejected_without_raising(text: str) -> None:
    result = check_sig(text, "secret", now=NOW)
    assert not result.ok
    assert result.reason is not None


def test_every_change_to_the_signed_part_is_caught() -> None:
    token = make_token(claims())
    signing_input_length = token.rindex(".")
    for index in range(signing_input_length):
        if token[index] == ".":
            continue
        replacement = "A" if token[index] != "A" else "B"
        tampered = token[:index] + replacement + token[index + 1 :]
        assert not check_sig(tampered, "secret", now=NOW).ok, index


# --- Keys ----------------------------------------------------------------------------------


def test_secret_forms() -> None:
    token = make_token(claims(), "sécret")
    assert check_sig(token, "sécret", now=NOW).ok  # str secrets are UTF-8
    assert check_sig(token, "sécret".encode(), now=NOW).ok
    oct_jwk = {"kty": "oct", "k": b64url("sécret".encode())}
    assert SigVerifier(oct_jwk).algorithm == "HS256"
    assert check_sig(token, oct_jwk, now=NOW).ok
    assert check_sig(token, {**oct_jwk, "k": oct_jwk["k"] + "="}, now=NOW).ok


@pytest.mark.parametrize("secret", [b'{"a": 1}', b"{not json", b"{\xff", b"[1]", b"  x"])
def test_bytes_that_only_look_like_json_are_secrets(secret: bytes) -> None:
    # A random binary key starts with "{" once in 256: only a JSON object with kty is a JWK.
    assert SigVerifier(secret).algorithm == "HS256"
    assert check_sig(make_token(claims(), secret), secret, now=NOW).ok


def test_a_secret_with_leading_space_is_kept_whole() -> None:
    assert check_sig(make_token(claims(), " secret"), " secret", now=NOW).ok
    assert not check_sig(make_token(claims(), " secret"), "secret", now=NOW).ok


def _ec_jwk(k: Keys, **changes: Any) -> dict[str, Any]:
    return {**jwk_of(k.ec_private), **changes}


BAD_KEYS: dict[str, tuple[Callable[[Keys], Any], str]] = {
    "garbage PEM": (
        lambda k: "-----BEGIN PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END PUBLIC KEY-----\n",
        "not a usable PEM key",
    ),
    "garbage private PEM": (
        lambda k: b"-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n",
        "not a usable PEM key",
    ),
    "encrypted private PEM": (
        lambda k: private_pem(k.ec_private, password=b"pw"),
        "not a usable PEM key",
    ),
    "P-384 PEM": (
        lambda k: public_pem(ec.generate_private_key(ec.SECP384R1())),
        "P-256",
    ),
    "Ed25519 PEM": (
        lambda k: private_pem(ed25519.Ed25519PrivateKey.generate()),
        "unsupported Grip-Sig key type",
    ),
    "JWK not JSON": (lambda k: "{not json", "not JSON"),
    "JWK with trailing data": (lambda k: '{"kty": "oct"}' * 2, "not JSON"),
    "JWK without kty": (lambda k: "{}", "unsupported JWK kty None"),
    "JWK OKP": (lambda k: {"kty": "OKP", "crv": "Ed25519", "x": "AA"}, "kty 'OKP'"),
    "JWK set": (lambda k: {"keys": [jwk_of(k.ec_private)]}, "JWK set"),
    "JWK EC P-384": (lambda k: _ec_jwk(k, crv="P-384"), "crv P-256"),
    "JWK EC point off the curve": (lambda k: _ec_jwk(k, y=_ec_jwk(k)["x"]), "not a point"),
    "JWK EC without x": (lambda k: {**_ec_jwk(k), "x": None}, "'x'"),
    "JWK EC x a number": (lambda k: _ec_jwk(k, x=5), "'x'"),
    "JWK EC x not base64url": (lambda k: _ec_jwk(k, x="a+b/"), "'x'"),
    "JWK EC x of impossible length": (lambda k: _ec_jwk(k, x="abcde"), "'x'"),
    "JWK EC x empty": (lambda k: _ec_jwk(k, x=""), "'x'"),
    "JWK RSA even exponent": (lambda k: {**jwk_of(k.rsa_private), "e": "Ag"}, "invalid RSA JWK"),
    "JWK RSA without n": (lambda k: {"kty": "RSA", "e": "AQAB"}, "'n'"),
    "JWK alg mismatch": (lambda k: _ec_jwk(k, alg="RS256"), "alg 'RS256'"),
    "JWK oct empty k": (lambda k: {"kty": "oct", "k": ""}, "'k'"),
    "JWK oct with alg ES256": (lambda k: {"kty": "oct", "k": "c2VjcmV0", "alg": "ES256"}, "HS256"),
}


@pytest.mark.parametrize("name", BAD_KEYS)
def test_bad_key_material_is_a_config_error(keys: Keys, name: str) -> None:
    make_key, message = BAD_KEYS[name]
    with pytest.raises(GripConfigError, match=re.escape(message)):
        SigVerifier(make_key(keys))


def test_a_key_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        SigVerifier(1234)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [None, "", b""])
def test_an_empty_key_verifies_nothing(key: str | bytes | None) -> None:
    verifier = SigVerifier(key)
    assert verifier.algorithm is None
    token = make_token(claims(), b"")
    assert verifier.check(token, NOW).reason is SigFailure.NO_KEY


# --- ProxyVerifier -------------------------------------------------------------------------

PROXY = "http://proxy.example"
HS_KEY = "a-verify-key-of-at-least-32-bytes"


@pytest.mark.parametrize(
    ("proxies", "all_have", "any_has"),
    [
        ([], False, False),
        ([GripConfig(PROXY)], False, False),
        ([GripConfig(PROXY, verify_key="k")], True, True),
        ([GripConfig(PROXY, control_iss="realm", key="k")], True, True),
        ([GripConfig(PROXY, key="publish-secret")], True, True),  # as django-grip reads it
        ([GripConfig(PROXY, verify_key="")], False, False),
        ([GripConfig(PROXY, verify_key="k"), GripConfig(PROXY)], False, True),
        ([GripConfig(PROXY, verify_key="k"), GripConfig(PROXY, verify_key="j")], True, True),
    ],
)
def test_which_proxies_have_keys(proxies: list[GripConfig], all_have: bool, any_has: bool) -> None:
    verifier = ProxyVerifier(proxies)
    assert (verifier.all_have_keys, verifier.has_keys, verifier.any_has_key) == (
        all_have,
        all_have,
        any_has,
    )


def test_a_verify_key_alone_verifies_without_any_proxy() -> None:
    verifier = ProxyVerifier([], verify_key=HS_KEY)
    assert (verifier.any_has_key, verifier.all_have_keys, verifier.unverifiable) == (
        True,
        False,
        (),
    )
    assert verifier.verify(make_token(claims(), HS_KEY), NOW).ok
    assert verifier.verify(make_token(claims(), "x" * 32), NOW).reason is SigFailure.BAD_SIGNATURE


def test_the_verify_key_fills_the_proxies_without_one() -> None:
    verifier = ProxyVerifier(
        [GripConfig(PROXY), GripConfig(PROXY, verify_key="x" * 32)], verify_key=HS_KEY
    )
    assert verifier.all_have_keys and verifier.unverifiable == ()
    assert verifier.verify(make_token(claims(), HS_KEY), NOW).ok


def test_proxies_without_a_key_are_named() -> None:
    verifier = ProxyVerifier([GripConfig(PROXY), GripConfig("http://other:5561", verify_key="k")])
    assert verifier.unverifiable == (PROXY,)


def test_a_bad_verify_key_alone_is_a_config_error() -> None:
    with pytest.raises(GripConfigError, match="the Grip-Sig verify key"):
        ProxyVerifier(
            [], verify_key="-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----"
        )


def test_without_keys_nothing_verifies() -> None:
    verifier = ProxyVerifier([GripConfig(PROXY)])
    assert verifier.verify(make_token(claims(), ""), NOW).reason is SigFailure.NO_KEY


def test_every_proxy_key_is_tried(keys: Keys) -> None:
    verifier = ProxyVerifier(
        [
            GripConfig(PROXY, verify_key="changeme", verify_iss="pushpin"),
            GripConfig(PROXY, verify_key=keys.ec_pem, verify_iss="fastly:sid"),
            GripConfig(PROXY, control_iss="realm", key=b"realm-key"),
        ]
    )
    es256 = jwt.encode(claims(iss="fastly:sid"), keys.ec_private, algorithm="ES256")
    assert verifier.verify(es256, NOW).ok
    assert verifier.verify(make_token(claims(), "changeme"), NOW).ok
    assert verifier.verify(make_token(claims(iss="anyone"), b"realm-key"), NOW).ok
    # Each key keeps its own issuer.
    wrong_iss = jwt.encode(claims(iss="pushpin"), keys.ec_private, algorithm="ES256")
    assert verifier.verify(wrong_iss, NOW).reason is SigFailure.WRONG_ISSUER


@pytest.mark.parametrize("reverse", [False, True])
def test_the_most_telling_failure_wins(keys: Keys, reverse: bool) -> None:
    configs = [
        GripConfig(PROXY, verify_key=keys.ec_pem),
        GripConfig(PROXY, verify_key="other"),
        GripConfig(PROXY, verify_key="secret", verify_iss="pushpin"),
    ]
    if reverse:
        configs.reverse()
    verifier = ProxyVerifier(configs)
    result = verifier.verify(make_token(claims(iss="evil")), NOW)
    assert (result.reason, result.claims) == (SigFailure.WRONG_ISSUER, claims(iss="evil"))
    assert verifier.verify(make_token(claims(), "x"), NOW).reason is SigFailure.BAD_SIGNATURE
    assert verifier.verify("a.b.c", NOW).reason is SigFailure.MALFORMED


def test_ec_key_alone_reports_the_mismatch(keys: Keys) -> None:
    verifier = ProxyVerifier([GripConfig(PROXY, verify_key=keys.ec_pem)])
    assert verifier.verify(make_token(claims()), NOW).reason is SigFailure.ALGORITHM_MISMATCH


def test_a_bad_proxy_key_names_the_proxy() -> None:
    bad = GripConfig("http://bad.example/grip", verify_key="{broken")
    with pytest.raises(GripConfigError, match=r"GRIP proxy http://bad.example/grip: .*JSON"):
        ProxyVerifier([GripConfig(PROXY, verify_key="k"), bad])


def test_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        ProxyVerifier([], cache_size=0)


@pytest.fixture
def hmac_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records every HMAC verification the signature module performs."""
    calls: list[bytes] = []
    real_verify = _signature._HmacKey.verify

    def counting_verify(self: Any, signing_input: bytes, signature: bytes) -> bool:
        calls.append(signing_input)
        return real_verify(self, signing_input, signature)

    monkeypatch.setattr(_signature._HmacKey, "verify", counting_verify)
    return calls


def test_a_repeated_token_is_verified_once(hmac_calls: list[bytes]) -> None:
    verifier = ProxyVerifier([GripConfig(PROXY, verify_key="secret", verify_iss="pushpin")])
    token = make_token(claims(exp=NOW + 10))
    first = verifier.verify(token, NOW)
    assert first.ok
    assert verifier.verify(token, NOW + 1) is first
    assert verifier.verify(token, NOW + 9.9) is first
    assert len(hmac_calls) == 1
    # At exp the cache no longer answers, and the full check says why.
    assert verifier.verify(token, NOW + 10).reason is SigFailure.EXPIRED
    assert len(hmac_calls) == 2


def test_the_cache_honours_leeway(hmac_calls: list[bytes]) -> None:
    verifier = ProxyVerifier([GripConfig(PROXY, verify_key="secret")], leeway=5)
    token = make_token(claims(exp=NOW))
    assert verifier.verify(token, NOW).ok
    assert verifier.verify(token, NOW + 4.9).ok
    assert len(hmac_calls) == 1
    assert verifier.verify(token, NOW + 5).reason is SigFailure.EXPIRED


def test_failures_are_not_cached(hmac_calls: list[bytes]) -> None:
    verifier = ProxyVerifier([GripConfig(PROXY, verify_key="secret")])
    token = make_token(claims(), "wrong")
    for _ in range(3):
        assert verifier.verify(token, NOW).reason is SigFailure.BAD_SIGNATURE
    assert len(hmac_calls) == 3
    expired = make_token(claims(exp=NOW - 1))
    verifier.verify(expired, NOW)
    verifier.verify(expired, NOW)
    assert len(hmac_calls) == 5


def test_the_cache_is_bounded_and_drops_the_oldest(hmac_calls: list[bytes]) -> None:
    verifier = ProxyVerifier([GripConfig(PROXY, verify_key="secret")], cache_size=2)
    a, b, c = (make_token(claims(n=n)) for n in "abc")
    for token in (a, b, c):
        assert verifier.verify(token, NOW).ok
    assert len(hmac_calls) == 3
    assert verifier.verify(c, NOW).ok  # still cached
    assert verifier.verify(b, NOW).ok  # still cached
    assert len(hmac_calls) == 3
    assert verifier.verify(a, NOW).ok  # was dropped to make room for c
    assert len(hmac_calls) == 4


def test_a_huge_token_skips_the_cache(hmac_calls: list[bytes]) -> None:
    verifier = ProxyVerifier([GripConfig(PROXY, verify_key="secret")])
    token = make_token(claims(pad="x" * MAX_TOKEN_LENGTH))
    assert verifier.verify(token, NOW).reason is SigFailure.MALFORMED
    assert hmac_calls == []


# --- Logging and values --------------------------------------------------------------------


def test_rejections_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = make_token(claims(exp=NOW - 1))
    caplog.set_level(logging.DEBUG, logger="grip_asgi.signature")
    check_sig(token, "secret", now=NOW)
    ProxyVerifier([GripConfig(PROXY, verify_key="secret")]).verify(token, NOW)
    # check_sig logs its rejection; ProxyVerifier leaves that to the middleware's processor.
    assert [r.getMessage() for r in caplog.records] == ["Grip-Sig rejected: expired"]
    caplog.clear()
    check_sig(make_token(claims()), "secret", now=NOW)
    ProxyVerifier([GripConfig(PROXY, verify_key="secret")]).verify(make_token(claims()), NOW)
    assert caplog.records == []


def test_failure_values_are_short_and_printable() -> None:
    assert SigFailure("bad signature") is SigFailure.BAD_SIGNATURE
    assert isinstance(SigFailure.BAD_SIGNATURE, str)
    assert str(SigFailure.EXPIRED) == "expired"
    assert f"{SigFailure.NO_KEY}" == "no key"
    assert len({failure.value for failure in SigFailure}) == len(SigFailure)
