"""Who built a bundle: Ed25519 signatures over its ``SHA256SUMS`` (cryptography).

The package stage signs when ``MLPIPE_SIGNING_KEY`` is set, writing ``SHA256SUMS.sig`` next to the
checksums it signs (they list every other file, so one signature covers the whole bundle). Serving
and batch scoring given a trusted public key (``--trusted-key``, or ``MLPIPE_TRUSTED_KEY``) refuse an
unsigned bundle and one signed by any other key. Ed25519 signatures are deterministic: the same key
and the same bundle give the same bytes, so a signed ``dvc repro`` stays reproducible.

Keys are PEM files (``mlpipe keygen``); the variables hold a PEM file's path or its text, so a CI
secret can hold the key itself. A private key belongs in a secret store or a file outside the
repository, never in git, params or a DVC remote; the public key can be shared freely.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlpipe.core.errors import PipelineError

if TYPE_CHECKING:  # cryptography is imported where a key is used: the CLI's start stays fast
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY_ENV = "MLPIPE_SIGNING_KEY"
TRUSTED_KEY_ENV = "MLPIPE_TRUSTED_KEY"
ALGORITHM = "ed25519"


class SignatureError(PipelineError):
    """A key that cannot be read, or a signature that is missing, malformed or not the trusted key's."""


def _pem(value: str | os.PathLike[str], what: str) -> bytes:
    """A key's PEM bytes from its text or its file's path."""
    text = os.fspath(value)
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode("ascii", errors="replace")
    try:
        return Path(text).expanduser().read_bytes()
    except OSError as exc:
        raise SignatureError(f"{what}: cannot read {text}: {exc.strerror}") from None


def private_key(value: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file's path or text (unencrypted PKCS#8, as keygen writes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(_pem(value, "signing key"), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signing key: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"signing key: an Ed25519 key is needed, got {type(key).__name__}")
    return key


def public_key(value: str | os.PathLike[str] | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file's path or text (or its PEM bytes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pem = value if isinstance(value, bytes) else _pem(value, "trusted key")
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SignatureError(f"trusted key: not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"trusted key: an Ed25519 key is needed, got {type(key).__name__}")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key (the start of its raw bytes' sha256), shown in messages."""
    from cryptography.hazmat.primitives import serialization

    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def from_env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def sign(data: bytes, key: Ed25519PrivateKey) -> str:
    """The signature file's line: ``ed25519 <key id> <base64 signature>``."""
    return f"{ALGORITHM} {key_id(key.public_key())} {base64.b64encode(key.sign(data)).decode('ascii')}\n"


def check(data: bytes, line: str, trusted: Ed25519PublicKey, name: str) -> None:
    """Raise unless ``line`` (the signature file ``name``) is the trusted key's signature of ``data``."""
    from cryptography.exceptions import InvalidSignature

    parts = line.split()
    try:
        if len(parts) != 3 or parts[0] != ALGORITHM:
            raise ValueError
        signature = base64.b64decode(parts[2], validate=True)
    except (ValueError, binascii.Error):
        raise SignatureError(f"{name}: malformed (expected '{ALGORITHM} <key id> <base64>')") from None
    expected = key_id(trusted)
    if parts[1] != expected:
        raise SignatureError(f"{name}: signed by key {parts[1]}, not by the trusted key {expected}")
    try:
        trusted.verify(signature, data)
    except InvalidSignature:
        raise SignatureError(
            f"{name}: the signature does not match the checksums; the bundle was altered"
        ) from None


def generate(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """A new key pair: the private key at ``path`` (mode 0600) and the public key at ``path.pub``.

    Raises:
        SignatureError: if either file exists (a key is never overwritten).
    """
    private, public = Path(path), Path(f"{os.fspath(path)}.pub")
    for target in (private, public):
        if target.exists():
            raise SignatureError(f"{target} exists; refusing to overwrite a key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public.write_bytes(public_pem(key.public_key()))
    return private, public
