"""Grant keys and the key set: thumbprints as RFC 7638 defines them, the JWKS a lab reads,
rotation (the first key signs, every listed key is published), and key files that stop
the start with one line."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rero.app import create_app
from rero.grants import SigningKey, generate_key, lab_key, load_key, thumbprint
from rero.settings import Settings, SettingsError
from tests.helpers import ARM, PUBLIC_URL, key_files, with_lab


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_x(path: str) -> str:
    """The public key of a PEM file, read here with cryptography alone."""
    private = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return b64url(raw)


def rfc7638(x: str) -> str:
    """The thumbprint computed from the RFC's text: required members, sorted, no spaces."""
    members = '{"crv":"Ed25519","kty":"OKP","x":"' + x + '"}'
    return b64url(hashlib.sha256(members.encode()).digest())


def test_thumbprint_of_the_rfc_8037_example_key() -> None:
    """RFC 8037, appendix A.1 and A.3: the example key and its thumbprint."""
    d = base64.urlsafe_b64decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=")
    key = Ed25519PrivateKey.from_private_bytes(d)
    assert thumbprint(key.public_key()) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert SigningKey.of(key).public_jwk() == {
        "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "use": "sig", "alg": "EdDSA",
    }  # fmt: skip


def test_a_generated_key_file(tmp_path: Path) -> None:
    path = str(tmp_path / "grant.pem")
    made = generate_key(path)
    assert (tmp_path / "grant.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "grant.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert made.kid == rfc7638(public_x(path))
    assert load_key(path).kid == made.kid
    with pytest.raises(FileExistsError):
        generate_key(path)
    assert load_key(path).kid == made.kid  # untouched


def test_a_lab_key_and_its_hash() -> None:
    key, digest = lab_key()
    assert len(key) == 43
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert lab_key()[0] != key


async def test_the_key_set_is_published(make: Any, tmp_path: Path) -> None:
    (path,) = key_files(tmp_path, "only")
    client = await make(resources=(with_lab(ARM),), public_url=PUBLIC_URL,
                        grant_signing_keys=(path,))  # fmt: skip
    resp = await client.get("/.well-known/jwks.json")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "public, max-age=300"
    x = public_x(path)
    assert await resp.json() == {
        "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": rfc7638(x), "use": "sig",
                  "alg": "EdDSA"}]
    }  # fmt: skip


async def test_no_keys_no_key_set(client: Any) -> None:
    resp = await client.get("/.well-known/jwks.json")
    assert (resp.status, await resp.json()) == (200, {"keys": []})


async def test_rotation_publishes_both_and_signs_with_the_first(make: Any, tmp_path: Path) -> None:
    new, old = key_files(tmp_path, "new", "old")
    client = await make(resources=(with_lab(ARM),), public_url=PUBLIC_URL,
                        grant_signing_keys=(new, old))  # fmt: skip
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    kids = [rfc7638(public_x(new)), rfc7638(public_x(old))]
    assert [k["kid"] for k in jwks["keys"]] == kids
    login = await client.post("/auth/login", json={"username": "alice", "password": "alice-pw-Zq7"})
    token = (await login.json())["token"]
    headers = {"Authorization": f"Bearer {token}"}
    booked = await client.post(
        "/bookings", json={"resource": "arm-1", "date": "2026-11-24", "slot_id": 8},
        headers=headers,
    )  # fmt: skip
    booking = (await booked.json())["booking"]["id"]
    grant = await (await client.post(f"/bookings/{booking}/access", headers=headers)).json()
    header = jwt.get_unverified_header(grant["grant"])
    assert header == {"alg": "EdDSA", "kid": kids[0], "typ": "JWT"}
    # The old key verifies nothing new: only the new one checks this grant.
    keys = jwt.PyJWKSet.from_dict(jwks)
    options: Any = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
    jwt.decode(grant["grant"], keys[kids[0]], algorithms=["EdDSA"], audience="arm-1",
               options=options)  # fmt: skip
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(grant["grant"], keys[kids[1]], algorithms=["EdDSA"], audience="arm-1",
                   options=options)  # fmt: skip


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """Key files that must stop the start, and the end of the line each one gets."""
    rsa_like = folder / "ec.pem"
    rsa_like.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    garbage = folder / "garbage.pem"
    garbage.write_text("not a key\n")
    locked = folder / "locked.pem"
    locked.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return {
        "missing": (folder / "none.pem", "cannot read: No such file or directory"),
        "not Ed25519": (rsa_like, "not an Ed25519 key (rero keys generate PATH makes one)"),
        "not PEM": (garbage, "not an unencrypted PEM private key"),
        "encrypted": (locked, "not an unencrypted PEM private key"),
    }


@pytest.mark.parametrize("case", ["missing", "not Ed25519", "not PEM", "encrypted"])
def test_a_bad_key_file_stops_the_start(settings: Settings, tmp_path: Path, case: str) -> None:
    path, why = bad_files(tmp_path)[case]
    (good,) = key_files(tmp_path, "good")
    with pytest.raises(SettingsError) as raised:
        create_app(replace(settings, grant_signing_keys=(good, str(path))))
    assert str(raised.value) == f"grant_signing_keys: {str(path)!r}: {why}"
    assert "\n" not in str(raised.value)
