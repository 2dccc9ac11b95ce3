"""Walk FHIR JSON against the R4 type model: shape, cardinality, choice types, primitives.

One pass over the resource; every node lookup is a dict hit in the shipped
model, so the cost is linear in the size of the resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhir_server.definitions import ElementDef, TypeModel
from fhir_server.errors import Issue
from fhir_server.validation.primitives import ID_RE, check_primitive
from fhir_server.validation.references import check_reference

# Hook for per-resource and per-datatype rules (bundle, contained, attachment...).
Rule = Callable[["Walker", dict[str, Any], str], None]


class Walker:
    """Collects issues for one resource (and the resources nested in it)."""

    def __init__(self, model: TypeModel, binding_check: Callable[..., None] | None,
                 type_rules: dict[str, Rule], strict: bool = False) -> None:
        self.model = model
        self.strict = strict
        self.issues: list[Issue] = []
        self.binding_check = binding_check
        self.type_rules = type_rules

    def error(self, path: str, msg: str, code: str = "structure") -> None:
        self.issues.append(Issue("error", code, msg, [path]))

    def warning(self, path: str, msg: str, code: str = "informational") -> None:
        self.issues.append(Issue("warning", code, msg, [path]))

    def rule(self, path: str, msg: str, code: str = "invariant") -> None:
        """A business rule: an error under ``$validate`` (strict), a warning on ordinary writes."""
        self.issues.append(Issue("error" if self.strict else "warning", code, msg, [path]))

    # ------------------------------------------------------------ resources
    def resource(self, res: Any, path: str, contained: bool = False) -> None:
        if not isinstance(res, dict):
            self.error(path, f"A resource must be a JSON object, not {type(res).__name__}")
            return
        rtype = res.get("resourceType")
        if not isinstance(rtype, str) or not self.model.is_resource(rtype):
            self.error(path, f"Unknown resource type {rtype!r}", "invalid")
            return
        here = path if path.endswith(rtype) or "." in path or "[" in path else rtype
        rid = res.get("id")
        if rid is not None and (not isinstance(rid, str) or not ID_RE.fullmatch(rid)):
            why = "Too long" if isinstance(rid, str) and len(rid) > 64 else "Invalid Characters"
            self.error(f"{here}.id", f"Invalid Resource id: {why} ('{str(rid)[:80]}')", "invalid")
        self.object(res, rtype, here, is_resource=True, ctx=self.model.ancestors(rtype))
        rule = self.type_rules.get(rtype)
        if rule is not None:
            rule(self, res, here)

    # ------------------------------------------------------------ objects
    def object(self, obj: dict[str, Any], node_path: str, path: str, is_resource: bool = False,
               ctx: tuple[str, ...] = ()) -> None:
        node = self.model.node(node_path)
        if node is None:
            return
        choices: dict[str, str] = {}
        present: set[str] = set()
        for key, value in obj.items():
            if is_resource and key == "resourceType":
                continue
            is_ext = key.startswith("_")
            name = key[1:] if is_ext else key
            hit = node.resolve(name)
            if hit is None:
                self.error(f"{path}.{key}", f"Unrecognized property '{key}'")
                continue
            eldef, tc = hit
            present.add(eldef.name)
            if eldef.choice and not is_ext:
                other = choices.get(eldef.name)
                if other is not None and other != key:
                    self.error(f"{path}.{key}", f"Only one of {other} and {key} is allowed ({eldef.path})")
                choices[eldef.name] = key
            if is_ext:
                if not self.model.is_primitive(tc):
                    self.error(f"{path}.{key}", f"'{key}' is only allowed for primitive elements")
                    continue
                self.values(obj, key, value, eldef, tc, f"{path}.{name}", ext=True)
            else:
                self.values(obj, key, value, eldef, tc, f"{path}.{name}", ext=False)
                if tc == "Extension" and isinstance(value, list):
                    self.extensions(value, ctx, f"{path}.{name}", eldef.modifier)
        for eldef in node.required:
            if eldef.name not in present:
                self.error(f"{path}.{eldef.base_name}",
                           f"{eldef.path}: minimum required = {eldef.min}, but only found 0", "required")

    def values(self, obj: dict[str, Any], key: str, value: Any, eldef: ElementDef, tc: str, path: str,
               ext: bool) -> None:
        if eldef.repeats:
            if not isinstance(value, list):
                self.error(path, f"The property {key} must be a JSON Array, not {_kind(value)}")
                value = [value]
            elif not value:
                self.error(path, "Array cannot be empty - the property should not be present if it has no "
                                 "values")
                return
            if eldef.max is not None and len(value) > eldef.max and not ext:
                self.error(path, f"{eldef.path}: max allowed = {eldef.max}, but found {len(value)}")
            partner = obj.get(key[1:] if ext else f"_{key}")
            for i, item in enumerate(value):
                item_path = f"{path}[{i}]"
                if item is None:
                    if not (isinstance(partner, list) and i < len(partner) and partner[i] is not None):
                        self.error(item_path, "A null array entry needs a matching value or extension entry")
                    continue
                self.one(item, eldef, tc, item_path, ext)
        else:
            if isinstance(value, list):
                self.error(path, f"The property {key} must be a JSON Object or primitive, not an Array")
                return
            if value is None:
                self.error(path, f"The property {key} must not be null")
                return
            self.one(value, eldef, tc, path, ext)

    def one(self, value: Any, eldef: ElementDef, tc: str, path: str, ext: bool) -> None:
        if ext:  # the id/extension companion of a primitive
            if not isinstance(value, dict):
                self.error(path, f"The primitive extension of {path} must be a JSON object")
                return
            self.object(value, "Element", path, ctx=(eldef.path, *self.model.ancestors(tc)))
            return
        if tc in ("Resource", "DomainResource"):
            self.resource(value, path, contained=eldef.name == "contained")
            return
        if self.model.is_primitive(tc):
            if isinstance(value, (dict, list)):
                self.error(path, f"The property must be a primitive {tc}, not {_kind(value)}")
                return
            msg = check_primitive(tc, value)
            if msg is not None:
                self.error(path, msg, "value")
                return
            if eldef.binding_strength == "required" and self.binding_check and tc == "code":
                self.binding_check(self, eldef, None, value, path)
            return
        if not isinstance(value, dict):
            self.error(path, f"The property must be a JSON Object ({tc}), not {_kind(value)}")
            return
        if not value:
            self.error(path, "Object must have some content")
            return
        child = eldef.child_node(tc)
        ctx = (eldef.path, *self.model.ancestors(tc)) if child == tc else (eldef.path, child, tc, "Element")
        self.object(value, child, path, ctx=ctx)
        if tc == "Reference":
            ref = value.get("reference")
            if isinstance(ref, str):
                msg, malformed = check_reference(ref, eldef.targets, self.model)
                if msg is not None:
                    if malformed:
                        self.error(f"{path}.reference", msg, "invalid")
                    else:
                        self.rule(f"{path}.reference", msg, "invalid")
        if eldef.binding_strength == "required" and self.binding_check and tc in ("Coding", "CodeableConcept"):
            self.binding_check(self, eldef, tc, value, path)
        rule = self.type_rules.get(tc)
        if rule is not None:
            rule(self, value, path)


    def extensions(self, exts: list[Any], ctx: tuple[str, ...], path: str, modifier: bool) -> None:
        """Core extensions must exist, be used in their context and with their value types."""
        for i, ext in enumerate(exts):
            url = ext.get("url") if isinstance(ext, dict) else None
            if not isinstance(url, str) or ":" not in url:
                continue  # a complex extension's part, named relative to its parent
            epath = f"{path}[{i}]"
            known = self.model.extensions.get(url)
            if known is None:
                if url.startswith(CORE_EXT) or (url.startswith("http://hl7.org/fhir/") and "|" in url):
                    self.rule(epath, f"The extension {url} is not defined by FHIR R4", "structure")
                elif not XVER_EXT.match(url):
                    self.rule(epath, f"The extension {url} could not be found so is not allowed here",
                              "structure")
                continue
            if "Element" not in known.contexts and not known.contexts.intersection(ctx) \
                    and not (ctx and ctx[0] == "Extension.extension"):
                self.rule(epath, f"The extension {url} is not allowed to be used at this point (this element "
                                  f"is [{', '.join(ctx[:2])}]; allowed = {', '.join(sorted(known.contexts))})",
                           "structure")
            for key in ext:
                if key.startswith("value"):
                    vtype = key[5:6].lower() + key[6:]
                    if vtype not in known.types and vtype[:1].upper() + vtype[1:] not in known.types:
                        self.rule(f"{epath}.{key}", f"The Extension '{url}' definition allows for the types "
                                                     f"[{', '.join(known.types)}] but found type {vtype}",
                                   "structure")


CORE_EXT = "http://hl7.org/fhir/StructureDefinition/"
XVER_EXT = re.compile(r"http://hl7\.org/fhir/[0-9.]+/StructureDefinition/extension-")


def _kind(value: Any) -> str:
    if value is None:
        return "a Null"
    if isinstance(value, list):
        return "an Array"
    if isinstance(value, dict):
        return "an Object"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"
