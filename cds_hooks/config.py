"""CDS Hooks settings, from ``Settings.extra`` (``cds_*`` keys) or ``DIGITALFRONT_CDS_*`` variables."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_hooks.auth import TrustedClient


def _get(settings: Any, key: str) -> str | None:
    extra = getattr(settings, "extra", None) or {}
    if key in extra:
        return str(extra[key])
    return os.environ.get(f"DIGITALFRONT_{key.upper()}")


def _flag(raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    return raw.strip().lower() not in ("0", "off", "false", "no", "")


@dataclass
class CdsConfig:
    clients: list[TrustedClient] = field(default_factory=list)
    allow_unsigned: bool = False
    enabled: list[str] | None = None
    extra_modules: list[str] = field(default_factory=list)
    smart_launch_url: str | None = None
    cors_origins: str = "*"
    local_system_access: bool = True
    fetch_timeout_s: float = 5.0
    warm: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> CdsConfig:
        """``cds_clients`` is JSON (a list of {iss, jku, jwks, jwks_url}) or a path to such a file."""
        raw = _get(settings, "cds_clients")
        clients: list[TrustedClient] = []
        if raw:
            text = raw.strip()
            if not text.startswith("["):
                text = Path(text).read_text(encoding="utf-8")
            clients = [TrustedClient.from_json(d) for d in json.loads(text)]
        enabled = _get(settings, "cds_services")
        modules = _get(settings, "cds_service_modules")
        return cls(
            clients=clients,
            allow_unsigned=_flag(_get(settings, "cds_allow_unsigned"), False),
            enabled=[s.strip() for s in enabled.split(",") if s.strip()] if enabled else None,
            extra_modules=[s.strip() for s in modules.split(",") if s.strip()] if modules else [],
            smart_launch_url=_get(settings, "cds_smart_launch_url") or None,
            cors_origins=_get(settings, "cds_cors_origins") or "*",
            local_system_access=_flag(_get(settings, "cds_local_system_access"), True),
            fetch_timeout_s=float(_get(settings, "cds_fetch_timeout") or 5.0),
            warm=_flag(_get(settings, "cds_warm"), False),
        )
