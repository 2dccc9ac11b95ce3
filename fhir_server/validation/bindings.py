"""Required value-set bindings: the terminology service when wired, else the shipped codes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from fhir_server.definitions import ElementDef, TypeModel

if TYPE_CHECKING:
    from fhir_server.validation.structure import Walker


class Terminology(Protocol):
    """What validation needs from ``terminology.service.TerminologyService``."""

    def in_value_set(self, url: str, system: str, code: str) -> bool | None: ...


class BindingChecker:
    """Checks codes against closed required value sets; unknown value sets are not judged."""

    def __init__(self, model: TypeModel, terminology: Terminology | None = None) -> None:
        self.model = model
        self.terminology = terminology

    def member(self, url: str, system: str | None, code: str) -> bool | None:
        codes = self.model.value_set_codes(url)
        if self.terminology is not None:
            # A plain ``code`` has no system: it is implied by the value set when it draws on one system.
            tx_system = system
            if tx_system is None and codes is not None and len(codes) == 1:
                tx_system = next(iter(codes))
            if tx_system is not None:
                try:
                    verdict = self.terminology.in_value_set(url, tx_system, code)
                except Exception:  # noqa: BLE001 - a terminology failure must not fail the write
                    verdict = None
                if verdict is not None:
                    return verdict
        if codes is None:
            return None
        if system is None:
            return any(code in c for c in codes.values())
        return code in codes.get(system, ())

    def __call__(self, w: Walker, eldef: ElementDef, tc: str | None, value: Any, path: str) -> None:
        url = eldef.value_set
        if not url:
            return
        if tc is None:  # a plain code
            if self.member(url, None, value) is False:
                w.error(path, f"The value provided ('{value}') is not in the value set '{url}', and a code "
                              "is required from this value set", "code-invalid")
            return
        codings = [value] if tc == "Coding" else value.get("coding") or []
        verdicts = []
        for c in codings:
            if isinstance(c, dict) and isinstance(c.get("code"), str):
                verdicts.append(self.member(url, c.get("system"), c["code"]))
        if verdicts and all(v is False for v in verdicts):
            shown = ", ".join(f"{c.get('system')}#{c.get('code')}" for c in codings if isinstance(c, dict))
            w.error(path, f"None of the codes provided ({shown}) are in the value set '{url}', and a code is "
                          "required from this value set", "code-invalid")
