"""Grip-Sig attacks: one table, run against every adapter (ASGI, Django WSGI, Django ASGI).

With a verify key configured, no attack may make a request count as signed or proxied, the
app must see why (``grip.sig_error``), the reason must be logged at DEBUG, and the token
must never appear in any log record, at any level. Genuine tokens, one per algorithm, are the
controls that show the table can fail.

Each attack is sent in two shapes: a plain GET carrying ``Grip-Last`` and ``Grip-Feature``,
and a WebSocket-over-HTTP POST carrying events, ``Connection-Id`` and ``Meta-*`` (a direct
client posing as the proxy). Neither may have any effect: no ``Grip-Last``, no WebSocket
context, no ``Set-Meta-*``.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from grip_asgi._config import GripSettings
from grip_asgi._context import GripProcessor, RequestHead
from grip_asgi._signature import MAX_TOKEN_LENGTH, SigFailure
from grip_asgi._websocket import encode_websocket_events
from grip_asgi.testing import open_event, text_event
from tests.cases import (
    PROXY_REQUIRED,
    UNVERIFIED_GRIP_URL,
    Case,
    Config,
    Expected,
    Request,
    described,
)
from tests.test_conformance import ADAPTERS, Observed, observe

# --- Keys and tokens --------------------------------------------------------------------------

HS_KEY = "security-suite-hs256-key-of-32-bytes"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


EC_PEM = public_pem(EC_KEY)
RSA_PEM = public_pem(RSA_KEY)


def grip_url(key: str) -> str:
    return f"http://127.0.0.1:5561/?verify-iss=pushpin&verify-key={quote(key, safe='')}"


HS = Config(grip_url=grip_url(HS_KEY))
ES = Config(grip_url=grip_url(EC_PEM))
RS = Config(grip_url=grip_url(RSA_PEM))

NOW = int(time.time())
GOOD_CLAIMS = {"iss": "pushpin", "exp": NOW + 3600}
Signer = Callable[[bytes], bytes]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(
    sign: Signer,
    claims: Mapping[str, Any] | bytes = GOOD_CLAIMS,
    header: Mapping[str, Any] | bytes = b'{"typ":"JWT","alg":"HS256"}',
) -> str:
    """A JWT built by hand, so that it can be wrong in every way; bytes are sent as they are."""

    def segment(part: Mapping[str, Any] | bytes) -> str:
        return b64url(part if isinstance(part, bytes) else json.dumps(part).encode())

    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def hs256(key: str | bytes) -> Signer:
    secret = key.encode() if isinstance(key, str) else key
    return lambda data: hmac.digest(secret, data, "sha256")


def es256(key: ec.EllipticCurvePrivateKey, *, der: bool = False) -> Signer:
    def sign(data: bytes) -> bytes:
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
        if der:
            return signature
        r, s = decode_dss_signature(signature)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS form (RFC 7518 §3.4)

    return sign


def rs256(key: rsa.RSAPrivateKey) -> Signer:
    return lambda data: key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def unsigned(data: bytes) -> bytes:
    return b""


ES_HEADER = b'{"typ":"JWT","alg":"ES256"}'
RS_HEADER = b'{"typ":"JWT","alg":"RS256"}'
GOOD = jwt(hs256(HS_KEY))


def claims_json(exp: str) -> bytes:
    """Claims with ``exp`` written as raw JSON (for values json.dumps cannot write)."""
    return b'{"iss":"pushpin","exp":' + exp.encode() + b"}"


def tampered(token: str) -> str:
    """``token`` with its claims swapped for a far later ``exp``, its signature kept."""
    header, _, signature = token.split(".")
    claims = b64url(json.dumps({"iss": "pushpin", "exp": NOW + 10**6}).encode())
    return f"{header}.{claims}.{signature}"


# --- The table --------------------------------------------------------------------------------

SEVERAL = "several Grip-Sig headers"


@dataclass(frozen=True)
class Attack:
    id: str
    #: The ``Grip-Sig`` header values sent, one header each; () sends none.
    grip_sig: tuple[str, ...]
    #: The ``sig_error`` the app must see.
    reason: str | None
    config: Config = HS


ATTACKS = [
    Attack("no Grip-Sig", (), None),
    Attack("garbage", ("garbage",), "malformed token"),
    Attack("empty token", ("",), "malformed token"),
    Attack("only dots", ("..",), "malformed token"),
    Attack("header without alg", (jwt(hs256(HS_KEY), header={"typ": "JWT"}),), "malformed token"),
    Attack("claims not an object", (jwt(hs256(HS_KEY), claims=b"[1]"),), "malformed token"),
    Attack(
        "token over 8 KiB",
        (jwt(hs256(HS_KEY), claims={**GOOD_CLAIMS, "pad": "x" * MAX_TOKEN_LENGTH}),),
        "malformed token",
    ),
    Attack(
        "alg none",
        (jwt(unsigned, header={"typ": "JWT", "alg": "none"}),),
        "unsupported algorithm",
    ),
    Attack(
        "alg None",
        (jwt(unsigned, header={"typ": "JWT", "alg": "None"}),),
        "unsupported algorithm",
    ),
    Attack(
        "alg none with a valid HS256 signature",
        (jwt(hs256(HS_KEY), header={"typ": "JWT", "alg": "none"}),),
        "unsupported algorithm",
    ),
    Attack(
        "alg in lower case",
        (jwt(hs256(HS_KEY), header={"typ": "JWT", "alg": "hs256"}),),
        "unsupported algorithm",
    ),
    Attack("HS256 with a wrong key", (jwt(hs256("not-" + HS_KEY)),), "bad signature"),
    Attack("HS256 with an empty key", (jwt(hs256(b"")),), "bad signature"),
    Attack("claims changed after signing", (tampered(GOOD),), "bad signature"),
    Attack(
        "HS256 with the truncated signature",
        (GOOD[:-8],),
        "bad signature",
    ),
    Attack(
        "expired",
        (jwt(hs256(HS_KEY), claims={"iss": "pushpin", "exp": NOW - 60}),),
        "expired",
    ),
    Attack("no exp", (jwt(hs256(HS_KEY), claims={"iss": "pushpin"}),), "missing exp"),
    Attack(
        "exp a string", (jwt(hs256(HS_KEY), claims=claims_json('"9999999999"')),), "invalid exp"
    ),
    Attack("exp true", (jwt(hs256(HS_KEY), claims=claims_json("true")),), "invalid exp"),
    Attack("exp null", (jwt(hs256(HS_KEY), claims=claims_json("null")),), "invalid exp"),
    Attack("exp infinite", (jwt(hs256(HS_KEY), claims=claims_json("1e400")),), "invalid exp"),
    Attack("exp NaN", (jwt(hs256(HS_KEY), claims=claims_json("NaN")),), "invalid exp"),
    Attack(
        "exp beyond a float", (jwt(hs256(HS_KEY), claims=claims_json("9" * 400)),), "invalid exp"
    ),
    Attack(
        "nbf in the future",
        # Far ahead: the suite may reach this table many minutes after NOW was taken.
        (jwt(hs256(HS_KEY), claims={**GOOD_CLAIMS, "nbf": NOW + 10**6}),),
        "not yet valid",
    ),
    Attack(
        "nbf a string",
        (jwt(hs256(HS_KEY), claims={**GOOD_CLAIMS, "nbf": str(NOW)}),),
        "invalid nbf",
    ),
    Attack(
        "wrong iss",
        (jwt(hs256(HS_KEY), claims={"iss": "mallory", "exp": NOW + 3600}),),
        "wrong issuer",
    ),
    Attack("no iss", (jwt(hs256(HS_KEY), claims={"exp": NOW + 3600}),), "wrong issuer"),
    Attack(
        "iss not a string",
        (jwt(hs256(HS_KEY), claims={"iss": ["pushpin"], "exp": NOW + 3600}),),
        "wrong issuer",
    ),
    # Whitespace: a genuine token, padded or split. A server hands values over as received.
    Attack("leading space", (" " + GOOD,), "malformed token"),
    Attack("trailing space", (GOOD + " ",), "malformed token"),
    Attack("trailing tab", (GOOD + "\t",), "malformed token"),
    Attack("space inside", (GOOD.replace(".", ". ", 1),), "malformed token"),
    # Several Grip-Sig headers: Pushpin sends exactly one.
    Attack("two genuine Grip-Sig headers", (GOOD, GOOD), SEVERAL),
    Attack("garbage then genuine", ("garbage", GOOD), SEVERAL),
    Attack("genuine then garbage", (GOOD, "garbage"), SEVERAL),
    Attack("two tokens in one header", (f"{GOOD},{GOOD}",), SEVERAL),
    # Algorithm confusion: the key decides the algorithm, never the token.
    Attack(
        "HS256 keyed with the ES256 public key",
        (jwt(hs256(EC_PEM)),),
        "algorithm does not match the key",
        ES,
    ),
    Attack(
        "HS256 keyed with the ES256 public key, no final newline",
        (jwt(hs256(EC_PEM.rstrip("\n"))),),
        "algorithm does not match the key",
        ES,
    ),
    Attack(
        "HS256 keyed with the RS256 public key",
        (jwt(hs256(RSA_PEM)),),
        "algorithm does not match the key",
        RS,
    ),
    Attack(
        "ES256 signed by another EC key",
        (jwt(es256(OTHER_EC_KEY), header=ES_HEADER),),
        "bad signature",
        ES,
    ),
    Attack(
        "ES256 with a DER signature",
        (jwt(es256(EC_KEY, der=True), header=ES_HEADER),),
        "bad signature",
        ES,
    ),
    Attack(
        "ES256 header on an RS256 signature",
        (jwt(rs256(RSA_KEY), header=ES_HEADER),),
        "bad signature",
        ES,
    ),
    Attack(
        "RS256 against the EC key",
        (jwt(rs256(RSA_KEY), header=RS_HEADER),),
        "algorithm does not match the key",
        ES,
    ),
    Attack(
        "RS256 signed by another RSA key",
        (jwt(rs256(OTHER_RSA_KEY), header=RS_HEADER),),
        "bad signature",
        RS,
    ),
    Attack(
        "ES256 against the RSA key",
        (jwt(es256(EC_KEY), header=ES_HEADER),),
        "algorithm does not match the key",
        RS,
    ),
    Attack(
        "ES256 expired",
        (jwt(es256(EC_KEY), {"iss": "pushpin", "exp": NOW - 60}, ES_HEADER),),
        "expired",
        ES,
    ),
]


def attack_params() -> list[Any]:
    params = []
    for attack in ATTACKS:
        for adapter in ADAPTERS:
            params.append(pytest.param(attack, adapter, id=f"{attack.id}-{adapter}"))
    return params


GENUINE = [
    pytest.param(HS, GOOD, id="HS256"),
    pytest.param(ES, jwt(es256(EC_KEY), header=ES_HEADER), id="ES256"),
    pytest.param(RS, jwt(rs256(RSA_KEY), header=RS_HEADER), id="RS256"),
]

FORGED_LAST = ("Grip-Last", "chan; last-id=evil")
FORGED_FEATURE = ("Grip-Feature", "status, link:next")
SHAPES = ("http", "websocket")


def attack_request(attack: Attack, shape: str) -> Request:
    headers = [("Grip-Sig", value) for value in attack.grip_sig]
    headers += [FORGED_LAST, FORGED_FEATURE]
    if shape == "http":
        return Request("GET", tuple(headers))
    headers += [
        ("Content-Type", "application/websocket-events"),
        ("Connection-Id", "conn-1"),
        ("Meta-User", "mallory"),
    ]
    body = encode_websocket_events([open_event(), text_event("I am the proxy")])
    return Request("POST", tuple(headers), body)


def run(adapter: str, request: Request, config: Config) -> Observed:
    return observe(adapter, Case("attack", "describe", request, Expected(200), config))


def secrets_in(attack: Attack) -> list[str]:
    """The tokens an attack sends, each alone (a header may hold several, or padding)."""
    tokens = [token for value in attack.grip_sig for token in re.split(r"[\s,]+", value)]
    # Too short a value would match log text by chance; the shortest real token is 100+.
    return [token for token in tokens if len(token) >= 16]


def check_logs(caplog: pytest.LogCaptureFixture, attack: Attack) -> None:
    tokens = secrets_in(attack)
    for record in caplog.records:
        text = " ".join(
            (record.getMessage(), repr(record.args), record.exc_text or "", record.stack_info or "")
        )
        for token in tokens:
            assert token not in text, f"{record.name} logged the token: {record.getMessage()}"
        if record.name.startswith("grip"):
            assert record.levelno == logging.DEBUG, record.getMessage()
    for token in tokens:
        assert token not in caplog.text
    if attack.reason is not None:
        debug = [r.getMessage() for r in caplog.records if r.name.startswith("grip")]
        assert any(attack.reason in message for message in debug), debug


# --- The tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("attack", "adapter"), attack_params())
def test_attack_is_neither_signed_nor_proxied(
    attack: Attack,
    shape: str,
    adapter: str,
    caplog: pytest.LogCaptureFixture,
    figures: Counter[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    observed = run(adapter, attack_request(attack, shape), attack.config)

    # The app saw an unproxied request, and why: no Grip-Last, no features, no WebSocket.
    assert (observed.status, observed.error) == (200, None)
    assert json.loads(observed.body) == json.loads(described(sig_error=attack.reason))
    # Nothing GRIP in the reply: no instruct, no WebSocket events, no Set-Meta-*.
    assert observed.headers == {"content-type": "application/json"}
    check_logs(caplog, attack)
    figures["signature attack requests refused"] += 1


@pytest.mark.parametrize(("attack", "adapter"), attack_params())
def test_attack_on_a_proxy_only_app_gets_501(
    attack: Attack, adapter: str, figures: Counter[str]
) -> None:
    config = replace(attack.config, proxy_only=True)
    observed = run(adapter, attack_request(attack, "websocket"), config)
    assert (observed.status, observed.body) == (501, PROXY_REQUIRED)
    figures["signature attack requests refused"] += 1


# --- Every configuration shape ----------------------------------------------------------------
#
# The rule: once any key is configured, from anywhere, an unverified request is never
# proxied. Each shape below configures the HS256 key in one of the ways a user can, and the
# HS256 attacks run against it. Shapes that configure no verify-iss accept any iss, so the
# attacks that differ from a genuine token only in their iss are left out of those (they are
# genuinely signed there, and the control below shows it).

ISS_ONLY_ATTACKS = {"wrong iss", "no iss", "iss not a string"}
KEYLESS_PROXY = ("control_uri", "http://127.0.0.1:5562")


def proxy_entry(**fields: str) -> tuple[tuple[str, str], ...]:
    return (("control_uri", "http://127.0.0.1:5561"), *fields.items())


CONFIG_SHAPES = {
    "GRIP_URL with verify-key": (Config(grip_url=grip_url(HS_KEY)), True),
    "verify key alone": (Config(grip_url=None, verify_key=HS_KEY), False),
    "verify key and a keyless URL": (
        Config(grip_url=UNVERIFIED_GRIP_URL, verify_key=HS_KEY),
        False,
    ),
    "environment: GRIP_URL": (
        Config(grip_url=None, environ=(("GRIP_URL", grip_url(HS_KEY)),)),
        True,
    ),
    "environment: GRIP_VERIFY_KEY alone": (
        Config(grip_url=None, environ=(("GRIP_VERIFY_KEY", HS_KEY),)),
        False,
    ),
    "environment: GRIP_PROXIES": (
        Config(
            grip_url=None,
            environ=(
                (
                    "GRIP_PROXIES",
                    json.dumps([dict(proxy_entry(verify_iss="pushpin", verify_key=HS_KEY))]),
                ),
            ),
        ),
        True,
    ),
    "GRIP_PROXIES verify_key": (
        Config(grip_url=None, proxies=(proxy_entry(verify_iss="pushpin", verify_key=HS_KEY),)),
        True,
    ),
    "GRIP_PROXIES control_iss and key": (
        Config(grip_url=None, proxies=(proxy_entry(control_iss="app", key=HS_KEY),)),
        False,
    ),
    "GRIP_PROXIES key alone (django-grip verifies with it)": (
        Config(grip_url=None, proxies=(proxy_entry(key=HS_KEY),)),
        False,
    ),
    "GRIP_PROXIES keyless entry and GRIP_VERIFY_KEY": (
        Config(grip_url=None, proxies=(proxy_entry(),), verify_key=HS_KEY),
        False,
    ),
    "a keyed proxy next to a keyless one": (
        Config(grip_url=grip_url(HS_KEY), proxies=((KEYLESS_PROXY,),)),
        True,
    ),
}


def shape_params() -> list[Any]:
    params = []
    for shape_id, (config, checks_iss) in CONFIG_SHAPES.items():
        for attack in ATTACKS:
            if attack.config != HS or (not checks_iss and attack.id in ISS_ONLY_ATTACKS):
                continue
            for adapter in ADAPTERS:
                params.append(
                    pytest.param(config, attack, adapter, id=f"{shape_id}-{attack.id}-{adapter}")
                )
    return params


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("config", "attack", "adapter"), shape_params())
def test_every_configuration_shape_fails_closed(
    config: Config, attack: Attack, shape: str, adapter: str, figures: Counter[str]
) -> None:
    observed = run(adapter, attack_request(attack, shape), config)
    assert (observed.status, observed.error) == (200, None)
    seen = json.loads(observed.body)
    assert (seen["proxied"], seen["signed"], seen["ws"], seen["last"]) == (False, False, False, {})
    assert seen["needs_signed"] is True
    assert seen["sig_error"] == attack.reason
    assert observed.headers == {"content-type": "application/json"}
    figures["signature attack requests refused, by configuration shape"] += 1


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize(
    "config", [config for config, _ in CONFIG_SHAPES.values()], ids=list(CONFIG_SHAPES)
)
def test_every_configuration_shape_accepts_the_genuine_token(config: Config, adapter: str) -> None:
    """The control: in every shape the proxy's own token is signed, so the table can fail."""
    observed = run(adapter, attack_request(Attack("genuine", (GOOD,), None), "http"), config)
    seen = json.loads(observed.body)
    assert (seen["proxied"], seen["signed"], seen["sig_error"]) == (True, True, None)
    assert seen["last"] == {"chan": "evil"}


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_keyless_proxy_next_to_a_keyed_one_is_not_trusted(adapter: str) -> None:
    """Any Grip-Sig would do for the keyless proxy, so with a key elsewhere none does."""
    config, _ = CONFIG_SHAPES["a keyed proxy next to a keyless one"]
    attack = Attack("any value", ("from-the-keyless-proxy",), "malformed token")
    seen = json.loads(run(adapter, attack_request(attack, "http"), config).body)
    assert (seen["proxied"], seen["needs_signed"]) == (False, True)


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.id for attack in ATTACKS])
def test_without_a_key_no_attack_counts_as_signed(attack: Attack, adapter: str) -> None:
    """Without a verify key any Grip-Sig marks a request proxied (the app warns at start),
    but nothing can make it signed."""
    observed = run(adapter, attack_request(attack, "http"), Config(grip_url=UNVERIFIED_GRIP_URL))
    seen = json.loads(observed.body)
    assert seen["signed"] is False
    assert seen["needs_signed"] is False
    if not attack.grip_sig:
        assert seen["proxied"] is False


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("config", "token"), GENUINE)
def test_a_genuine_token_is_signed(config: Config, token: str, shape: str, adapter: str) -> None:
    """The control: the same requests with the proxy's own token are proxied."""
    genuine = Attack("genuine", (token,), None, config)
    observed = run(adapter, attack_request(genuine, shape), config)
    if shape == "websocket":
        # The handler's reply was replaced by the (empty) WebSocket-over-HTTP reply.
        assert observed.headers == {"content-type": "application/websocket-events"}
        return
    seen = json.loads(observed.body)
    assert (seen["proxied"], seen["signed"], seen["sig_error"]) == (True, True, None)
    assert seen["last"] == {"chan": "evil"}  # from the proxy, Grip-Last is trusted


def test_the_table_covers_every_rejection_reason() -> None:
    reasons = {attack.reason for attack in ATTACKS}
    assert reasons >= {str(reason) for reason in SigFailure} - {"no key"}
    assert SEVERAL in reasons


def test_a_verified_token_is_not_accepted_after_its_exp() -> None:
    """Verified tokens are cached until their ``exp``; the cache must not outlive it."""
    clock = [float(NOW)]
    processor = GripProcessor(GripSettings.build(HS.grip_url), clock=lambda: clock[0])
    token = jwt(hs256(HS_KEY), claims={"iss": "pushpin", "exp": NOW + 10})
    head = RequestHead("GET", grip_sig=[token])

    assert processor.inspect(head).is_signed
    clock[0] = NOW + 10
    ctx = processor.inspect(head)
    assert (ctx.is_proxied, ctx.is_signed, ctx.sig_error) == (False, False, "expired")
