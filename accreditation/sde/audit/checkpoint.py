"""Signed checkpoints of the chain head.

A checkpoint is (seq, hash) of the head, signed with an Ed25519 key that
lives outside the database. It is stored in the database (for auditors) and
appended to a witness file (in production: WORM storage or another host).
Someone who rewrites the database can recompute the hash chain, but not the
signatures, and cannot reach the witness copy: truncating the tail or
rewriting history then contradicts a checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from sde.audit.log import now_ts
from sde.audit.schema import audit_checkpoints, audit_events
from sde.core.config import Settings
from sde.core.errors import ConfigError
from sde.core.files import write_atomic


def signed_message(seq: int, head_hash: str, ts: str) -> bytes:
    return f"sde-audit-checkpoint\n{seq}\n{head_hash}\n{ts}".encode()


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    ts: str
    key_id: str
    signature: str

    def as_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """The checkpoint key pair: private key file plus its `.pub` beside it."""

    def __init__(self, key_path: Path) -> None:
        self.key_path = key_path
        self.public_path = key_path.with_suffix(key_path.suffix + ".pub")

    def ensure(self) -> None:
        """Create the key pair on first use (private key 0600 in a 0700 folder)."""
        if self.key_path.exists():
            return
        self.key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.public_path.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        # The private key last: once it exists, the pair is whole.
        write_atomic(self.key_path, pem, mode=0o600)

    def private_key(self) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"audit checkpoint key {self.key_path}: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"audit checkpoint key {self.key_path} is not an Ed25519 key")
        return key

    def public_key(self) -> Ed25519PublicKey | None:
        if not self.public_path.exists():
            return None
        key = serialization.load_pem_public_key(self.public_path.read_bytes())
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"audit checkpoint key {self.public_path} is not an Ed25519 key")
        return key

    def sign(self, seq: int, head_hash: str, ts: str) -> Checkpoint:
        key = self.private_key()
        sig = key.sign(signed_message(seq, head_hash, ts))
        return Checkpoint(
            seq, head_hash, ts, key_id_of(key.public_key()), base64.b64encode(sig).decode()
        )

    @staticmethod
    def valid(public: Ed25519PublicKey, cp: Checkpoint) -> bool:
        try:
            public.verify(base64.b64decode(cp.signature), signed_message(cp.seq, cp.hash, cp.ts))
        except (InvalidSignature, ValueError):
            return False
        return True


def read_witness(path: Path) -> list[Checkpoint]:
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(Checkpoint(**json.loads(line)))
        except (ValueError, TypeError):
            raise ConfigError(f"audit witness {path}: line {n} is not a checkpoint") from None
    return out


def _append_witness(path: Path, cp: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(cp.as_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def checkpoint(engine: Engine, signer: CheckpointSigner, witness: Path) -> Checkpoint | None:
    """Sign the current head unless it is already checkpointed. None for an empty chain."""
    signer.ensure()
    try:
        with engine.begin() as conn:
            head = conn.execute(
                select(audit_events.c.seq, audit_events.c.hash)
                .order_by(audit_events.c.seq.desc())
                .limit(1)
            ).first()
            if head is None:
                return None
            last = conn.execute(
                select(audit_checkpoints.c.seq).where(audit_checkpoints.c.seq == head[0])
            ).first()
            if last is not None:
                return None
            cp = signer.sign(head[0], head[1], now_ts())
            conn.execute(insert(audit_checkpoints).values(**cp.__dict__))
    except IntegrityError:
        # Writers committing at once race to sign the same head (PostgreSQL runs both
        # checks above before either inserts): the other signed it, as asked here.
        return None
    # Written after the commit: a witness entry must never name a head that
    # was rolled back.
    _append_witness(witness, cp)
    return cp


def sign_head(engine: Engine, settings: Settings) -> Checkpoint | None:
    """Checkpoint the head with the configured key and witness file.

    Called once a write has committed (`audited_transaction`, or after a
    publication's own commit-or-undo), so a checkpoint never names a head that
    could still roll back.
    """
    return checkpoint(engine, CheckpointSigner(settings.checkpoint_key_path), settings.witness_path)
