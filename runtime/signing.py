"""Signed bundles: an Ed25519 signature over the exact bytes of ``swarm.json``. torch-free.

``swarm.json`` already lists the sha256 of every file of every agent folder, so
one signature over the manifest covers the whole bundle: a robot that trusts
the signer's public key checks the signature, then each file against the
signed hashes (``runtime.bundle.load_agent_dir``). The manifest's format does
not change; the signature is a separate file next to it, ``swarm.json.sig``::

    {
      "format": "marl-edge-signature",
      "version": 1,
      "algorithm": "ed25519",
      "manifest": "swarm.json",
      "manifest_sha256": "<64 hex: sha256 of the signed bytes, for the error message only>",
      "key_id": "<16 hex: the signer's key id>",
      "signature": "<base64: the 64-byte Ed25519 signature over the exact bytes of swarm.json>"
    }

Keys (``marl-keys signing OUT``): ``OUT`` is the private key, PKCS#8 PEM,
unencrypted, file mode 0600, kept on the build workstation; ``OUT.pub`` is the
public key, SubjectPublicKeyInfo PEM, the file robots hold. A key's id is the
first 16 hex digits of the sha256 of its 32 raw public-key bytes.

The crypto is the ``cryptography`` package (the ``crypto`` extra), imported only
when a key is used: the edge install without it runs unsigned bundles as before
and says in one line what to install when ``--trusted-key`` is given.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..wire.keyfile import private_file_problem
from .bundle import MANIFEST, BundleError

SIG_SUFFIX = ".sig"
SIGNATURE = MANIFEST + SIG_SUFFIX  # swarm.json.sig
SIG_FORMAT = "marl-edge-signature"
SIG_VERSION = 1
ALGORITHM = "ed25519"
CRYPTO_HINT = "pip install 'marl-edge[crypto]'"


class SigningError(BundleError):
    """A key or signature problem (missing, unreadable, not trusted, not verifying)."""


def _crypto() -> tuple[Any, Any, Any]:
    """(ed25519 module, serialization module, InvalidSignature), or one line on what to install."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SigningError(f"signed bundles need the cryptography package, which this install lacks: {CRYPTO_HINT}") from None
    return ed25519, serialization, InvalidSignature


def signature_path(manifest_path: Path | str) -> Path:
    """Where the signature of ``manifest_path`` lives: next to it, ``<name>.sig``."""
    p = Path(manifest_path)
    return p.with_name(p.name + SIG_SUFFIX)


def key_id(public_key: Any) -> str:
    """The first 16 hex digits of the sha256 of the 32 raw public-key bytes."""
    _, ser, _ = _crypto()
    raw = public_key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ---- key files ---------------------------------------------------------------------------------


def generate_signing_key(out: Path | str, force: bool = False) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair: ``out`` (private, PKCS#8 PEM, mode 0600) and
    ``out.pub`` (public, SubjectPublicKeyInfo PEM). Returns (private, public, key id)."""
    ed, ser, _ = _crypto()
    out = Path(out)
    pub = out.with_name(out.name + ".pub")
    if not force:
        for p in (out, pub):
            if p.exists():
                raise SigningError(f"{p} already exists; pass --force to replace it, or choose another name")
    if out.parent.exists() and not out.parent.is_dir():
        raise SigningError(f"{out.parent} is not a directory")
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # a new key folder: private to its owner
    key = ed.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    public_pem = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    try:
        for p in (out, pub):
            if force and p.exists():
                p.unlink()
        # created with 0600 from the start (O_EXCL: never through a file someone else made)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem)
        os.chmod(out, 0o600)  # whatever the umask did
        fd = os.open(pub, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(public_pem)
    except OSError as e:
        raise SigningError(f"cannot write the key pair {out}: {e.strerror or e}") from None
    return out, pub, key_id(key.public_key())


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise SigningError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise SigningError(f"cannot read {what} {path}: {e.strerror or e}") from None


def load_private_key(path: Path | str) -> Any:
    """The Ed25519 private key in ``path`` (PKCS#8 PEM, unencrypted, not readable by others)."""
    ed, ser, _ = _crypto()
    path = Path(path)
    data = _read_key_file(path, "signing key")
    if b"PRIVATE KEY" not in data:
        hint = " (that is a public key; sign with the private key it came from)" if b"PUBLIC KEY" in data else ""
        raise SigningError(f"{path} is not a PEM private key{hint}; make a key pair with marl-keys signing OUT")
    problem = private_file_problem(path)
    if problem:
        raise SigningError(f"signing key {path}: {problem}")
    try:
        key = ser.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningError(f"signing key {path} is encrypted; marl-export reads unencrypted keys (marl-keys signing writes them)") from None
    except Exception as e:  # noqa: BLE001 (its parse errors vary by version)
        raise SigningError(f"signing key {path} cannot be read as a PEM private key ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise SigningError(f"signing key {path} is a {type(key).__name__.lstrip('_')}, not an Ed25519 key; make one with marl-keys signing OUT")
    return key


def load_public_key(path: Path | str) -> Any:
    """The Ed25519 public key in ``path`` (SubjectPublicKeyInfo PEM, ``OUT.pub`` of marl-keys signing)."""
    ed, ser, _ = _crypto()
    path = Path(path)
    data = _read_key_file(path, "trusted key")
    if b"PRIVATE KEY" in data:
        raise SigningError(f"trusted key {path} is a private key; give its public key ({path.name}.pub): only the build workstation holds the private key")
    try:
        key = ser.load_pem_public_key(data)
    except Exception as e:  # noqa: BLE001 (its parse errors vary by version)
        raise SigningError(f"trusted key {path} cannot be read as a PEM public key ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                           "give the OUT.pub written by marl-keys signing OUT") from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise SigningError(f"trusted key {path} is a {type(key).__name__.lstrip('_')}, not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a bundle's signature may verify with (``--trusted-key``, repeatable)."""

    keys: tuple[tuple[str, Any, str], ...]  # (key id, Ed25519PublicKey, file it came from)

    @classmethod
    def load(cls, paths: Iterable[Path | str]) -> "TrustedKeys":
        keys = []
        for p in paths:
            k = load_public_key(p)
            keys.append((key_id(k), k, str(p)))
        if not keys:
            raise SigningError("no trusted keys given")
        return cls(tuple(keys))

    @classmethod
    def of(cls, x: "TrustedKeys | Iterable[Path | str] | None") -> "TrustedKeys | None":
        """Itself, loaded from paths, or None for no keys (no signature required)."""
        if x is None or isinstance(x, TrustedKeys):
            return x
        paths = [x] if isinstance(x, (str, Path)) else list(x)
        return cls.load(paths) if paths else None

    @property
    def ids(self) -> list[str]:
        return [k[0] for k in self.keys]


# ---- signing and verifying ---------------------------------------------------------------------


def sign_manifest(manifest_path: Path | str, key: Any) -> dict[str, Any]:
    """Sign the exact bytes of ``manifest_path`` with ``key`` (a private key or its file);
    writes ``<manifest>.sig`` next to it and returns what it wrote."""
    if isinstance(key, (str, Path)):
        key = load_private_key(key)
    manifest_path = Path(manifest_path)
    data = manifest_path.read_bytes()
    sig = {
        "format": SIG_FORMAT,
        "version": SIG_VERSION,
        "algorithm": ALGORITHM,
        "manifest": manifest_path.name,
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(data)).decode("ascii"),
    }
    out = signature_path(manifest_path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(sig, indent=2) + "\n")
    os.replace(tmp, out)
    return sig


def sign_bundle(bundle_dir: Path | str, key: Any) -> dict[str, Any]:
    """Check an existing bundle (every file against swarm.json), then sign its manifest."""
    from .bundle import load_bundle

    if isinstance(key, (str, Path)):
        key = load_private_key(key)  # before reading the bundle: a bad key is reported first
    b = load_bundle(bundle_dir)
    return sign_manifest(Path(b.path) / MANIFEST, key)


def _read_signature(sig_path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        d = json.loads(sig_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SigningError(f"{sig_path} is corrupt ({e}); sign the bundle again") from None
    if not isinstance(d, dict) or d.get("format") != SIG_FORMAT:
        raise SigningError(f"{sig_path} is not a marl-edge signature (format {d.get('format') if isinstance(d, dict) else None!r})")
    if d.get("version") != SIG_VERSION or d.get("algorithm") != ALGORITHM:
        raise SigningError(f"{sig_path}: signature version {d.get('version')!r} / algorithm {d.get('algorithm')!r} is not supported "
                           f"(this runtime reads version {SIG_VERSION}, {ALGORITHM})")
    try:
        raw = base64.b64decode(str(d.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise SigningError(f"{sig_path}: signature: expected 64 bytes of base64, got {len(raw)}; sign the bundle again")
    return d, raw


def verify_manifest(data: bytes, manifest_path: Path | str, trusted: TrustedKeys) -> str:
    """Check that ``data`` (the bytes of ``manifest_path``) carries a signature by one of
    ``trusted``; returns that key's id, or raises one ``SigningError`` saying why not."""
    _, _, InvalidSignature = _crypto()
    manifest_path = Path(manifest_path)
    sig_path = signature_path(manifest_path)
    if not sig_path.is_file():
        where = manifest_path.parent if manifest_path.name == MANIFEST else manifest_path
        raise SigningError(f"bundle {where} is not signed (no {sig_path.name}) but --trusted-key was given; "
                           "sign it with marl-export --sign-key KEY or marl-keys sign BUNDLE --key KEY")
    d, raw = _read_signature(sig_path)
    for kid, key, _ in trusted.keys:  # every trusted key: the file's key_id is not itself signed
        try:
            key.verify(raw, data)
            return kid
        except InvalidSignature:
            continue
    claimed = str(d.get("key_id"))
    why = ", ".join(trusted.ids)
    if d.get("manifest_sha256") != hashlib.sha256(data).hexdigest():
        because = f"{manifest_path.name} was changed after it was signed"
    elif claimed not in trusted.ids:
        because = f"it was made by key {claimed}, which is not trusted (trusted: {why})"
    else:
        because = f"the signature of key {claimed} is corrupt"
    raise SigningError(f"{sig_path}: the signature does not verify with any trusted key: {because}")


__all__ = ["SIGNATURE", "SigningError", "TrustedKeys", "generate_signing_key", "load_private_key", "load_public_key", "key_id",
           "sign_manifest", "sign_bundle", "verify_manifest", "signature_path", "CRYPTO_HINT"]
