"""Service plugins: each module under ``cds_hooks.services`` (or an entry point in the
``digitalfront.cds_services`` group, or a module named in config) exposes ``SERVICE`` (or ``SERVICES``).

A new service is one file defining a ``CdsService`` subclass instance named ``SERVICE``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from cds_hooks.cards import CdsResponse, Link
from cds_hooks.prefetch import PrefetchData

log = logging.getLogger(__name__)
JsonDict = dict[str, Any]
ENTRY_POINT_GROUP = "digitalfront.cds_services"


@dataclass
class ServiceEnv:
    """What a service may use besides its prefetch: links, the model/NLP layers, a clock."""

    base_url: str = "http://localhost:8080"
    fhir_base: str = "http://localhost:8080/fhir"
    smart_launch_url: str | None = None
    settings: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def patient_link(self, patient_id: str, label: str = "Open the patient in DigitalFront") -> Link:
        """A smart link to the clinician app when one is configured, else the patient's page."""
        if self.smart_launch_url:
            return Link(label=label, url=self.smart_launch_url, type="smart",
                        app_context=f"patient={patient_id}")
        return Link(label=label, url=f"{self.fhir_base}/Patient/{patient_id}", type="absolute")


class CdsService:
    """Base of every service: its discovery entry plus ``invoke``."""

    id: ClassVar[str]
    hook: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    prefetch: ClassVar[dict[str, str]] = {}
    required_prefetch: ClassVar[frozenset[str]] = frozenset()
    usage_requirements: ClassVar[str | None] = None

    def discovery(self) -> JsonDict:
        out: JsonDict = {"hook": self.hook, "title": self.title, "description": self.description,
                         "id": self.id}
        if self.prefetch:
            out["prefetch"] = dict(self.prefetch)
        if self.usage_requirements:
            out["usageRequirements"] = self.usage_requirements
        return out

    def invoke(self, request: JsonDict, data: PrefetchData, env: ServiceEnv) -> CdsResponse:
        raise NotImplementedError

    def warm(self, settings: Any) -> None:
        """Load slow resources (models, NLP pipelines) before the first call; default: nothing."""


def _from_module(name: str) -> list[CdsService]:
    """``SERVICE`` (one) or ``SERVICES`` (several sharing logic, e.g. one per hook)."""
    mod = importlib.import_module(name)
    found = [getattr(mod, "SERVICE", None), *getattr(mod, "SERVICES", [])]
    return [s for s in found if isinstance(s, CdsService)]


def discover(enabled: list[str] | None = None, extra_modules: list[str] | None = None) -> list[CdsService]:
    """All built-in services, entry-point services and configured modules; ``enabled`` filters by id."""
    import cds_hooks.services as pkg

    found: list[CdsService] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            found.extend(_from_module(f"{pkg.__name__}.{info.name}"))
        except Exception:  # noqa: BLE001 - one broken plugin must not take the others down
            log.exception("CDS service module %s failed to load", info.name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, CdsService):
                found.append(obj)
        except Exception:  # noqa: BLE001
            log.exception("CDS service entry point %s failed to load", ep.name)
    for name in extra_modules or []:
        svcs = _from_module(name)
        if not svcs:
            raise ValueError(f"module {name} has no SERVICE")
        found.extend(svcs)
    if enabled is not None:
        found = [s for s in found if s.id in enabled]
    ids = [s.id for s in found]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate CDS service ids: {sorted(dup)}")
    return found
