"""Settings from the environment (``DIGITALFRONT_*``) with CLI overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.strip().lower() not in ("0", "off", "false", "no", "")


def _workers(raw: str | None) -> int | None:
    if raw is None or raw.strip().lower() in ("", "auto"):
        return None
    return max(0, int(raw))


@dataclass
class Settings:
    database_url: str = field(
        default_factory=lambda: os.environ.get("DIGITALFRONT_DATABASE_URL", "sqlite:///./var/digitalfront.db"))
    base_url: str = field(default_factory=lambda: os.environ.get("DIGITALFRONT_BASE_URL", ""))
    auth: bool = field(default_factory=lambda: _flag("DIGITALFRONT_AUTH", True))
    max_body_bytes: int = field(
        default_factory=lambda: int(os.environ.get("DIGITALFRONT_MAX_BODY_BYTES", str(32 * 1024 * 1024))))
    allow_multiple_delete: bool = field(default_factory=lambda: _flag("DIGITALFRONT_MULTIPLE_DELETE", False))
    validate_writes: bool = field(default_factory=lambda: _flag("DIGITALFRONT_VALIDATE", True))
    data_dir: str = field(default_factory=lambda: os.environ.get("DIGITALFRONT_DATA_DIR", "./var"))
    nlp_on_write: bool = field(default_factory=lambda: _flag("DIGITALFRONT_NLP_ON_WRITE", False))
    inference_backend: str = field(default_factory=lambda: os.environ.get("DIGITALFRONT_INFERENCE", "inprocess"))
    triton_url: str = field(default_factory=lambda: os.environ.get("DIGITALFRONT_TRITON_URL", ""))
    # HL7v2 worker processes that map/validate/index ahead of the writer; None: cores minus one (0 on one core)
    hl7_workers: int | None = field(default_factory=lambda: _workers(os.environ.get("DIGITALFRONT_HL7_WORKERS")))
    # SQLite: FULL (a commit survives power loss) or NORMAL (survives a server crash only); see docs/deployment.md
    sqlite_synchronous: str = field(
        default_factory=lambda: os.environ.get("DIGITALFRONT_SQLITE_SYNCHRONOUS", "FULL").strip().upper())
    # seconds a request waits for the database (SQLite's write lock, a pooled connection) before a 503
    db_wait_s: float = field(default_factory=lambda: float(os.environ.get("DIGITALFRONT_DB_WAIT_S", "60")))
    extra: dict[str, str] = field(default_factory=dict)
