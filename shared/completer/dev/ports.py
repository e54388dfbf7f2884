"""Ports of the local stack (imported by the command line, so it imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PORTS", "Ports"]

DEFAULT_PORTS = {
    "temporal": 7233,
    "ui": 8233,
    "http": 8080,
    "pubsub": 8081,
    "emulator": 8085,
    "s3": 5000,
    "gcs": 8082,
    "storage": 9023,
    "firestore": 8086,
}


@dataclass(frozen=True)
class Ports:
    """Ports asked for; None means the default when free, else any free port."""

    temporal: int | None = None
    ui: int | None = None
    http: int | None = None
    pubsub: int | None = None
    emulator: int | None = None
    s3: int | None = None
    gcs: int | None = None
    storage: int | None = None
    firestore: int | None = None
