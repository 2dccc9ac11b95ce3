"""Reference.reference well-formedness (references.html#literal)."""

from __future__ import annotations

import re

from fhir_server.definitions import TypeModel

_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/([A-Za-z0-9\-.]{1,64}))?")
_CONDITIONAL = re.compile(r"([A-Z][A-Za-z]+)\?\S*")
_ABSOLUTE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*:\S+")
_ABS_FHIR = re.compile(r"https?://\S+/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?")


def reference_type(ref: str) -> str | None:
    """The resource type a literal reference names, when it names one."""
    m = _RELATIVE.fullmatch(ref) or _CONDITIONAL.fullmatch(ref) or _ABS_FHIR.fullmatch(ref)
    return m.group(1) if m else None


def check_reference(ref: str, targets: tuple[str, ...], model: TypeModel) -> tuple[str | None, bool]:
    """(message, malformed) when ``ref`` is not a well-formed literal reference for these targets.

    ``malformed`` separates a broken reference from a well-formed one to a type
    the element does not allow (a business rule, reported less harshly).
    """
    if ref.startswith("#"):
        return None, False  # contained (or '#' for the container); resolution is checked with dom-3
    if ref.startswith("urn:"):
        return None, False  # bundle-internal identity (urn:uuid, urn:oid); the bundle resolves it
    rtype: str | None
    if _RELATIVE.fullmatch(ref) or _CONDITIONAL.fullmatch(ref):
        rtype = reference_type(ref)
        if rtype is None or not model.is_resource(rtype):
            return f"Reference '{ref}' names an unknown resource type", True
    elif _ABSOLUTE.fullmatch(ref):
        rtype = reference_type(ref)
        if rtype is not None and not model.is_resource(rtype):
            rtype = None  # an absolute URL need not be a FHIR RESTful URL
    else:
        return f"Invalid reference '{ref[:80]}': expected Type/id, an absolute URL, urn:uuid or #id", True
    if rtype and targets and "Resource" not in targets and rtype not in targets:
        return f"The type '{rtype}' is not valid for this reference (allowed: {', '.join(targets)})", False
    return None, False
