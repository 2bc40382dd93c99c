"""Signed access grants: the Ed25519 keys of ``grant_signing_keys`` (the first signs, the
rest are still published so that the grants they signed verify until they expire), the
public set labs verify with (``/.well-known/jwks.json``), and the grant itself, a compact
JWS that names one student, one booking and one resource for the booking's hour.

Keys are read once at start-up; a file that is missing, unreadable or not an Ed25519
private key stops the service with one line (:class:`rero.settings.SettingsError`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rero.settings import Settings, SettingsError

ALGORITHM: Final = "EdDSA"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(public: Ed25519PublicKey) -> str:
    """The key's RFC 7638 thumbprint: SHA-256 of its required members, in order, no
    spaces; labs and rotations name a key by it."""
    x = _b64url(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True)
class SigningKey:
    """One private key and its thumbprint (the ``kid`` of what it signs)."""

    private: Ed25519PrivateKey
    kid: str

    @classmethod
    def of(cls, private: Ed25519PrivateKey) -> SigningKey:
        return cls(private, thumbprint(private.public_key()))

    def public_jwk(self) -> dict[str, str]:
        raw = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": self.kid,
                "use": "sig", "alg": ALGORITHM}  # fmt: skip


def load_key(path: str) -> SigningKey:
    """The Ed25519 private key in the PEM file at ``path``, or one line saying why not."""
    where = f"grant_signing_keys: {path!r}"
    try:
        pem = Path(path).read_bytes()
    except OSError as e:
        raise SettingsError(f"{where}: cannot read: {e.strerror}") from None
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SettingsError(f"{where}: not an unencrypted PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SettingsError(f"{where}: not an Ed25519 key (rero keys generate PATH makes one)")
    return SigningKey.of(private)


def generate_key(path: str) -> SigningKey:
    """Write a new Ed25519 private key to ``path`` (PKCS #8 PEM, mode 0600); an existing
    file is never overwritten (:class:`FileExistsError`)."""
    key = SigningKey.of(Ed25519PrivateKey.generate())
    pem = key.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return key


def lab_key() -> tuple[str, str]:
    """A new lab API key and its SHA-256 in hex (what ``api_key_sha256`` lists)."""
    key = secrets.token_urlsafe(32)
    return key, hashlib.sha256(key.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class GrantClaims:
    """What a grant says: who (``sub``, ``name``), which booking and resource, and from
    when until when the lab may let them in."""

    resource: str
    srn: str
    name: str
    booking_id: int
    issued_at: datetime
    not_before: datetime
    expires: datetime


class Signer:
    """Signs grants with the first key; publishes every configured key."""

    def __init__(self, keys: Sequence[SigningKey], issuer: str) -> None:
        self.keys = tuple(keys)
        self.issuer = issuer

    @classmethod
    def load(cls, settings: Settings) -> Signer:
        issuer = settings.public_url.rstrip("/")
        return cls([load_key(p) for p in settings.grant_signing_keys], issuer)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def sign(self, grant: GrantClaims) -> str:
        """A compact JWS, its ``jti`` unique to this grant."""
        if not self.keys:  # settings require keys once a resource has a lab
            raise RuntimeError("no grant_signing_keys to sign with")
        key = self.keys[0]
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": grant.resource, "sub": grant.srn, "name": grant.name,
            "bid": grant.booking_id, "jti": secrets.token_urlsafe(16),
            "iat": int(grant.issued_at.timestamp()), "nbf": int(grant.not_before.timestamp()),
            "exp": int(grant.expires.timestamp()),
        }  # fmt: skip
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})
