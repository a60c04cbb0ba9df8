"""Grip-Sig verification: the JWT a GRIP proxy adds to every request it forwards (spec §2.1)."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple, cast

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ._config import GripConfig
from ._errors import GripConfigError

__all__ = (
    "ProxyVerifier",
    "SigCheck",
    "SigFailure",
    "SigVerifier",
    "check_sig",
    "validate_sig",
)

logger = logging.getLogger("grip_asgi.signature")

#: Longer tokens are rejected unparsed. Pushpin's are about 150 characters.
MAX_TOKEN_LENGTH = 8192

# Three base64url segments, no padding or whitespace; the signature may be empty so that an
# unsecured ``alg: none`` token is reported as such rather than as malformed.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_ALGORITHMS = ("HS256", "ES256", "RS256")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class SigFailure(StrEnum):
    """Why a ``Grip-Sig`` token was rejected."""

    #: No key is configured, or the key is empty (an empty HMAC secret is never a key, §8.10).
    NO_KEY = "no key"
    #: Not three base64url segments of JSON objects, too long, or no ``alg`` in the header.
    MALFORMED = "malformed token"
    #: The header's ``alg`` is not HS256, ES256 or RS256 (``none`` included).
    UNSUPPORTED_ALGORITHM = "unsupported algorithm"
    #: The header's ``alg`` is not the one the key is for (the key decides, never the token).
    ALGORITHM_MISMATCH = "algorithm does not match the key"
    BAD_SIGNATURE = "bad signature"
    #: The signature verified but the token has no ``exp`` claim.
    MISSING_EXP = "missing exp"
    #: ``exp`` is not a finite number (a string or a bool is not a number).
    INVALID_EXP = "invalid exp"
    EXPIRED = "expired"
    #: ``nbf`` is present but not a finite number.
    INVALID_NBF = "invalid nbf"
    #: ``nbf`` is in the future.
    NOT_YET_VALID = "not yet valid"
    #: ``iss`` is missing or not the required issuer.
    WRONG_ISSUER = "wrong issuer"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class SigCheck:
    """The outcome of checking a ``Grip-Sig`` token; true when it verified.

    ``claims`` holds the token's payload once its signature verified, also when a claim then
    failed (``EXPIRED``, ``WRONG_ISSUER``, ...): trust it only when ``ok`` is true.
    """

    ok: bool
    reason: SigFailure | None = None
    claims: Mapping[str, object] | None = None

    def __bool__(self) -> bool:
        return self.ok


_FAILED = {reason: SigCheck(False, reason) for reason in SigFailure}


class _Token(NamedTuple):
    alg: str
    signing_input: bytes
    signature: bytes
    payload: str  # still base64url: decoded only once the signature verified


class _HmacKey:
    __slots__ = ("_secret",)
    alg = "HS256"

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        expected = hmac.digest(self._secret, signing_input, "sha256")
        return hmac.compare_digest(expected, signature)


class _EcKey:
    __slots__ = ("_public",)
    alg = "ES256"

    def __init__(self, public: ec.EllipticCurvePublicKey) -> None:
        self._public = public

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        # JWS carries ECDSA as the raw 32-byte r and s (RFC 7518 §3.4); cryptography wants DER.
        if len(signature) != 64:
            return False
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        try:
            self._public.verify(encode_dss_signature(r, s), signing_input, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True


class _RsaKey:
    __slots__ = ("_public",)
    alg = "RS256"

    def __init__(self, public: rsa.RSAPublicKey) -> None:
        self._public = public

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        try:
            self._public.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True


_Key = _HmacKey | _EcKey | _RsaKey


class SigVerifier:
    """Checks ``Grip-Sig`` tokens against one key, parsed once, here.

    Args:
        key: An HMAC secret (``str``, used as UTF-8, or ``bytes``) for HS256; a PEM public
            key (``str`` or ``bytes``) for ES256 (EC P-256) or RS256 (RSA); or a JWK, as a
            JSON ``str`` or a mapping (``kty`` ``oct``, ``EC`` or ``RSA``). A ``str`` is PEM
            when it starts with ``-----BEGIN``, a JWK when it starts with ``{``, else a
            secret; ``bytes`` are PEM or a JSON JWK with ``kty`` when they look like one, else
            a secret. A PEM *private* key is accepted and only its public half is kept (the
            file Pushpin signs with can be shared). An empty or None key verifies nothing:
            every check fails with ``NO_KEY``.
        iss: The ``iss`` claim tokens must carry, compared exactly; None checks nothing.
        leeway: Seconds of clock skew allowed on ``exp`` and ``nbf``.

    The key alone decides the algorithm: a secret only accepts HS256, an EC key only ES256,
    an RSA key only RS256, whatever the token's header says.

    Raises:
        GripConfigError: The key is not a valid PEM, JWK, or supported key type.
    """

    __slots__ = ("_iss", "_key", "_leeway")

    def __init__(
        self,
        key: str | bytes | Mapping[str, Any] | None,
        iss: str | None = None,
        *,
        leeway: float = 0,
    ) -> None:
        _check_leeway(leeway)
        self._key = _load_key(key)
        self._iss = iss
        self._leeway = leeway

    @property
    def algorithm(self) -> str | None:
        """The one algorithm this verifier accepts (``HS256``, ``ES256`` or ``RS256``), or
        None when it has no key."""
        return None if self._key is None else self._key.alg

    def check(self, token: str, now: float) -> SigCheck:
        """Check ``token`` (a ``Grip-Sig`` header value) at time ``now`` (Unix seconds).

        Never raises for bad input: every problem is a failed :class:`SigCheck`.
        """
        if self._key is None:
            result = _FAILED[SigFailure.NO_KEY]
        else:
            parsed = _parse(token)
            if isinstance(parsed, SigFailure):
                result = _FAILED[parsed]
            else:
                result = _check_parsed(parsed, self._key, self._iss, now, self._leeway)
        if not result.ok:
            logger.debug("Grip-Sig rejected: %s", result.reason)
        return result


class ProxyVerifier:
    """Checks ``Grip-Sig`` against every configured GRIP proxy's key.

    Each proxy's key is :attr:`GripConfig.signature_key`, with its ``verify_iss``. Keys are
    parsed here, once. Tokens that verified are remembered until their ``exp`` (Pushpin
    signs each request but repeats a token within a second), in a cache of at most
    ``cache_size`` tokens that drops the oldest first. Only valid tokens enter it, and
    only a proxy can make those.

    ``verify_key`` verifies for the proxies that have no key of their own, and on its own
    when there is no proxy at all.

    Who counts as the proxy (spec §4.5): when any key is configured (:attr:`any_has_key`),
    a request is proxied only if :meth:`verify` succeeds, so a proxy without a key can
    then not be told from a client posing as it. Only when no key is configured at all
    does any ``Grip-Sig`` header mark a request proxied.

    Raises:
        GripConfigError: A key is not a valid key (the message names the proxy).
    """

    __slots__ = (
        "_cache",
        "_cache_size",
        "_keys",
        "_leeway",
        "_lock",
        "_proxy_count",
        "unverifiable",
    )

    def __init__(
        self,
        proxies: Iterable[GripConfig],
        *,
        verify_key: str | bytes | None = None,
        leeway: float = 0,
        cache_size: int = 256,
    ) -> None:
        _check_leeway(leeway)
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        keys = []
        unverifiable = []
        for proxy in proxies:
            try:
                key = _load_key(proxy.signature_key or verify_key)
            except GripConfigError as exc:
                raise GripConfigError(f"GRIP proxy {proxy.control_uri}: {exc}") from exc
            if key is None:
                unverifiable.append(proxy.control_uri)
            else:
                keys.append((key, proxy.verify_iss))
        proxy_count = len(keys) + len(unverifiable)
        if proxy_count == 0:
            try:
                alone = _load_key(verify_key)
            except GripConfigError as exc:
                raise GripConfigError(f"the Grip-Sig verify key: {exc}") from exc
            if alone is not None:
                keys.append((alone, None))
        self._keys = tuple(keys)
        self._proxy_count = proxy_count
        #: The control URIs of the proxies that have no key, whose requests cannot verify.
        self.unverifiable: tuple[str, ...] = tuple(unverifiable)
        self._leeway = leeway
        # token -> (its exp, the successful check)
        self._cache: dict[str, tuple[float, SigCheck]] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def all_have_keys(self) -> bool:
        """True when there are proxies and every one has a signature key: then only a
        verified ``Grip-Sig`` makes a request proxied."""
        return 0 < self._proxy_count == len(self._keys)

    @property
    def has_keys(self) -> bool:
        """Same as :attr:`all_have_keys`."""
        return self.all_have_keys

    @property
    def any_has_key(self) -> bool:
        """True when any key is configured: then only a verified ``Grip-Sig`` counts."""
        return bool(self._keys)

    def verify(self, token: str, now: float) -> SigCheck:
        """Check ``token`` against each proxy's key at time ``now`` (Unix seconds).

        Returns the first success, else the most telling failure: one whose signature
        verified (``EXPIRED``, ``WRONG_ISSUER``, ...) over ``BAD_SIGNATURE`` over an
        algorithm mismatch, and so on. ``NO_KEY`` when no proxy has a key.
        """
        if len(token) > MAX_TOKEN_LENGTH:  # before hashing it for the cache
            result = _FAILED[SigFailure.MALFORMED]
        else:
            cached = self._cache.get(token)
            if cached is not None and now - self._leeway < cached[0]:
                return cached[1]
            result = self._verify_uncached(token, now)
        # The caller (GripProcessor) logs the decision, with what it did about it.
        return result

    def _verify_uncached(self, token: str, now: float) -> SigCheck:
        if not self._keys:
            return _FAILED[SigFailure.NO_KEY]
        parsed = _parse(token)
        if isinstance(parsed, SigFailure):
            return _FAILED[parsed]
        best = _FAILED[SigFailure.NO_KEY]
        for key, iss in self._keys:
            result = _check_parsed(parsed, key, iss, now, self._leeway)
            if result.ok:
                self._remember(token, result)
                return result
            if _progress(result) > _progress(best):
                best = result
        return best

    def _remember(self, token: str, result: SigCheck) -> None:
        exp = cast("Mapping[str, float]", result.claims)["exp"]  # checked: a finite number
        with self._lock:  # lookups need no lock: dict.get is atomic
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]  # dicts keep insertion order
            self._cache[token] = (exp, result)


def check_sig(
    token: str,
    key: str | bytes | Mapping[str, Any] | None,
    iss: str | None = None,
    *,
    now: float | None = None,
    leeway: float = 0,
) -> SigCheck:
    """Check a ``Grip-Sig`` token against one key, saying why it failed.

    ``key`` and ``iss`` are as for :class:`SigVerifier`; ``now`` defaults to the current
    time. To check many tokens against the same key, build a :class:`SigVerifier` once.

    Raises:
        GripConfigError: ``key`` is not a valid key.
    """
    verifier = SigVerifier(key, iss, leeway=leeway)
    return verifier.check(token, time.time() if now is None else now)


def validate_sig(
    token: str,
    key: str | bytes | Mapping[str, Any] | None,
    iss: str | None = None,
    *,
    now: float | None = None,
) -> bool:
    """True when ``token`` is signed by ``key``, has not expired, and (if given) has ``iss``.

    gripcontrol's function, except that ES256 and RS256 always work and that invalid key
    material raises :class:`GripConfigError` instead of failing every request silently.
    """
    return check_sig(token, key, iss, now=now).ok


def _check_leeway(leeway: float) -> None:
    if not (leeway >= 0 and math.isfinite(leeway)):
        raise ValueError(f"leeway must be a finite number of seconds >= 0, got {leeway!r}")


# How far a failed check got, in check order; any claim failure comes after these.
_PROGRESS: dict[SigFailure | None, int] = {
    SigFailure.NO_KEY: 0,
    SigFailure.MALFORMED: 1,
    SigFailure.UNSUPPORTED_ALGORITHM: 2,
    SigFailure.ALGORITHM_MISMATCH: 3,
    SigFailure.BAD_SIGNATURE: 4,
}


def _progress(result: SigCheck) -> int:
    # A verified signature with a bad claim (EXPIRED, WRONG_ISSUER, ...) tells the most.
    return _PROGRESS.get(result.reason, len(_PROGRESS))


def _parse(token: str) -> _Token | SigFailure:
    if len(token) > MAX_TOKEN_LENGTH or _TOKEN_SHAPE.fullmatch(token) is None:
        return SigFailure.MALFORMED
    signing_input, _, signature = token.rpartition(".")
    header_segment, _, payload_segment = signing_input.partition(".")
    header = _decode_object(header_segment)
    if header is None or "alg" not in header:
        return SigFailure.MALFORMED
    alg = header["alg"]
    if alg not in _ALGORITHMS:  # `in` a tuple compares with ==, safe for any JSON value
        return SigFailure.UNSUPPORTED_ALGORITHM
    try:
        signature_bytes = _b64url_decode(signature)
    except ValueError:
        return SigFailure.MALFORMED
    return _Token(alg, signing_input.encode("ascii"), signature_bytes, payload_segment)


def _check_parsed(token: _Token, key: _Key, iss: str | None, now: float, leeway: float) -> SigCheck:
    if token.alg != key.alg:
        return _FAILED[SigFailure.ALGORITHM_MISMATCH]
    if not key.verify(token.signing_input, token.signature):
        return _FAILED[SigFailure.BAD_SIGNATURE]
    claims = _decode_object(token.payload)
    if claims is None:
        return _FAILED[SigFailure.MALFORMED]
    reason = _claims_failure(claims, iss, now, leeway)
    return SigCheck(reason is None, reason, MappingProxyType(claims))


def _claims_failure(
    claims: Mapping[str, object], iss: str | None, now: float, leeway: float
) -> SigFailure | None:
    if "exp" not in claims:
        return SigFailure.MISSING_EXP
    exp = _timestamp(claims["exp"])
    if exp is None:
        return SigFailure.INVALID_EXP
    if exp <= now - leeway:
        return SigFailure.EXPIRED
    if "nbf" in claims:
        nbf = _timestamp(claims["nbf"])
        if nbf is None:
            return SigFailure.INVALID_NBF
        if nbf > now + leeway:
            return SigFailure.NOT_YET_VALID
    if iss is not None and claims.get("iss") != iss:
        return SigFailure.WRONG_ISSUER
    return None


def _timestamp(value: object) -> float | None:
    # A JWT NumericDate: a finite JSON number. bool is an int subclass but not a number here.
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return seconds if math.isfinite(seconds) else None


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _decode_object(segment: str) -> dict[str, Any] | None:
    try:
        value = json.loads(_b64url_decode(segment))
    except (ValueError, RecursionError):  # bad base64 or JSON, or absurdly deep nesting
        return None
    return value if isinstance(value, dict) else None


# --- Keys -----------------------------------------------------------------------------------


def _load_key(key: str | bytes | Mapping[str, Any] | None) -> _Key | None:
    if key is None or key == "" or key == b"":
        return None  # an empty HMAC secret would let anyone sign (spec §8.10)
    if isinstance(key, Mapping):
        return _load_jwk(key)
    if isinstance(key, str):
        text = key.lstrip()
        if text.startswith("-----BEGIN"):
            return _load_pem(text.encode())
        if text.startswith("{"):
            try:
                jwk = json.loads(text)  # starts with "{": an object or an error
            except ValueError:
                raise GripConfigError("the Grip-Sig key starts with '{' but is not JSON") from None
            return _load_jwk(jwk)
        return _HmacKey(key.encode())
    if isinstance(key, bytes):
        data = key.lstrip()
        if data.startswith(b"-----BEGIN"):
            return _load_pem(data)
        # A binary secret may start with "{" by chance: only a JSON object with "kty" is a JWK.
        jwk = _decode_jwk_bytes(data) if data.startswith(b"{") else None
        return _HmacKey(key) if jwk is None else _load_jwk(jwk)
    raise TypeError(f"a Grip-Sig key must be str, bytes or a mapping, not {type(key).__name__}")


def _decode_jwk_bytes(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "kty" in value else None


def _load_pem(pem: bytes) -> _Key:
    try:
        if b"PRIVATE KEY-----" in pem.split(b"\n", 1)[0]:
            # Pushpin's sig_key is a private key; keep only the public half of the same file.
            public: object = serialization.load_pem_private_key(pem, password=None).public_key()
        else:
            public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: an encrypted private key.
        raise GripConfigError(f"the Grip-Sig key is not a usable PEM key: {exc}") from exc
    return _from_public_key(public)


def _from_public_key(public: object) -> _Key:
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, ec.SECP256R1):
            raise GripConfigError(
                f"an EC Grip-Sig key must be on curve P-256 (ES256), not {public.curve.name}"
            )
        return _EcKey(public)
    if isinstance(public, rsa.RSAPublicKey):
        return _RsaKey(public)
    raise GripConfigError(
        f"unsupported Grip-Sig key type {type(public).__name__}: use an EC P-256 or RSA key"
    )


def _load_jwk(jwk: Mapping[str, Any]) -> _Key:
    if "keys" in jwk:
        raise GripConfigError("a JWK set is not supported: give the one key that signs Grip-Sig")
    kty = jwk.get("kty")
    key: _Key
    if kty == "oct":
        key = _HmacKey(_jwk_bytes(jwk, "k"))
    elif kty == "EC":
        if jwk.get("crv") != "P-256":
            raise GripConfigError(f"an EC JWK must have crv P-256 (ES256), not {jwk.get('crv')!r}")
        x = int.from_bytes(_jwk_bytes(jwk, "x"), "big")
        y = int.from_bytes(_jwk_bytes(jwk, "y"), "big")
        try:
            public: object = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        except ValueError:
            raise GripConfigError("the EC JWK's x and y are not a point on P-256") from None
        key = _from_public_key(public)
    elif kty == "RSA":
        e = int.from_bytes(_jwk_bytes(jwk, "e"), "big")
        n = int.from_bytes(_jwk_bytes(jwk, "n"), "big")
        try:
            key = _RsaKey(rsa.RSAPublicNumbers(e, n).public_key())
        except ValueError as exc:
            raise GripConfigError(f"invalid RSA JWK: {exc}") from None
    else:
        raise GripConfigError(f"unsupported JWK kty {kty!r}: use 'oct', 'EC' or 'RSA'")
    alg = jwk.get("alg")
    if alg is not None and alg != key.alg:
        raise GripConfigError(f"the JWK says alg {alg!r} but a {kty} key verifies {key.alg}")
    return key


def _jwk_bytes(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if isinstance(value, str) and _B64URL.fullmatch(value.rstrip("=")):
        try:
            return _b64url_decode(value.rstrip("="))
        except ValueError:  # a length no base64 can have
            pass
    raise GripConfigError(f"JWK member {name!r} must be a non-empty base64url string")
