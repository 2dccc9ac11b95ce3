"""The R4 type model's classes: element definitions, nodes, the model itself (compiled with mypyc,
see fhir_server/compiled.py; loading stays in the package, which reads its data files)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
PRIMITIVE_JSON = {
    "boolean": bool, "integer": int, "positiveInt": int, "unsignedInt": int, "decimal": (int, float),
}


def _upper_first(s: str) -> str:
    return s[:1].upper() + s[1:]


@dataclass(frozen=True, slots=True)
class ElementDef:
    """One element of a snapshot; ``max`` is None for ``*``."""

    path: str
    name: str
    types: tuple[str, ...]
    min: int
    max: int | None
    summary: bool
    modifier: bool
    xml_attr: bool
    binding_strength: str | None
    value_set: str | None
    content_ref: str | None
    targets: tuple[str, ...]
    has_children: bool

    @property
    def choice(self) -> bool:
        return self.name.endswith("[x]")

    @property
    def repeats(self) -> bool:
        return self.max is None or self.max > 1

    @property
    def base_name(self) -> str:
        return self.name[:-3] if self.choice else self.name

    def child_node(self, type_code: str) -> str:
        """The node path whose children describe a value of this element typed ``type_code``."""
        if self.has_children:
            return self.path
        if self.content_ref:
            return self.content_ref
        return type_code


@dataclass(slots=True)
class Node:
    """The children of one path (a type name or a backbone element path)."""

    path: str
    elements: dict[str, ElementDef] = field(default_factory=dict)
    by_json: dict[str, tuple[ElementDef, str]] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)
    required: tuple[ElementDef, ...] = ()

    def resolve(self, key: str) -> tuple[ElementDef, str] | None:
        """Map a JSON property name (``valueQuantity``) to (element, type code)."""
        return self.by_json.get(key)


@dataclass(frozen=True, slots=True)
class ExtensionDef:
    """A core extension: the element paths/types it may sit on and its allowed value types."""

    url: str
    contexts: frozenset[str]
    types: tuple[str, ...]
    modifier: bool


@dataclass(slots=True)
class TypeInfo:
    name: str
    kind: str
    abstract: bool
    base: str | None
    regex: str | None


class TypeModel:
    """Lookup of nodes by path, built once from the shipped extract."""

    def __init__(self, doc: dict[str, Any], valuesets: dict[str, dict[str, list[str]]],
                 extensions: dict[str, Any] | None = None,
                 search_params: dict[str, dict[str, Any]] | None = None) -> None:
        self.types: dict[str, TypeInfo] = {}
        self.search_params: dict[str, dict[str, Any]] = search_params or {}
        self.extensions: dict[str, ExtensionDef] = {
            url: ExtensionDef(url, frozenset(c.split(":", 1)[1] for c in e["context"]), tuple(e["types"]),
                              bool(e["modifier"]))
            for url, e in (extensions or {}).items()
        }
        # R4 technical correction: the spec's own snapshots put fhir-type on ElementDefinition.type.
        fhir_type = self.extensions.get(FHIR_TYPE_EXT)
        if fhir_type is not None:
            self.extensions[FHIR_TYPE_EXT] = ExtensionDef(
                fhir_type.url, fhir_type.contexts | {"ElementDefinition.type"}, fhir_type.types,
                fhir_type.modifier)
        self.nodes: dict[str, Node] = {}
        self.valuesets = valuesets
        for name, t in doc["types"].items():
            self.types[name] = TypeInfo(name, t["kind"], t["abstract"], t["base"], t.get("regex"))
            rows = t["elements"]
            paths = {r[0] for r in rows}
            prefixes = {p.rsplit(".", 1)[0] for p in paths}
            for path, types, mn, mx, flags, strength, vs, cref, targets in rows:
                parent, leaf = path.rsplit(".", 1)
                node_path = name if parent == name else parent
                node = self.nodes.setdefault(node_path, Node(node_path))
                el = ElementDef(path, leaf, tuple(types), mn, None if mx == "*" else int(mx),
                                "s" in flags, "m" in flags, "a" in flags, strength, vs, cref,
                                tuple(targets), path in prefixes)
                node.elements[leaf] = el
                node.order[leaf] = len(node.order)
                if el.choice:
                    for tc in el.types:
                        node.by_json[el.base_name + _upper_first(tc)] = (el, tc)
                elif el.types:
                    node.by_json[leaf] = (el, el.types[0])
                else:  # contentReference: the type is the referenced backbone
                    node.by_json[leaf] = (el, "BackboneElement")
            self.nodes.setdefault(name, Node(name))
        for node in self.nodes.values():
            node.required = tuple(el for el in node.elements.values() if el.min > 0)
        self._primitives = frozenset(n for n, t in self.types.items() if t.kind == "primitive-type")
        self._ancestors: dict[str, tuple[str, ...]] = {}

    def ancestors(self, type_code: str) -> tuple[str, ...]:
        """``type_code`` and its base types (Age -> Quantity -> Element)."""
        hit = self._ancestors.get(type_code)
        if hit is not None:
            return hit
        out: list[str] = []
        name: str | None = type_code
        while name and name not in out:
            out.append(name)
            info = self.types.get(name)
            name = info.base if info else None
        self._ancestors[type_code] = tuple(out)
        return self._ancestors[type_code]

    def node(self, path: str) -> Node | None:
        return self.nodes.get(path)

    def is_primitive(self, type_code: str) -> bool:
        return type_code in self._primitives

    def is_resource(self, name: str) -> bool:
        t = self.types.get(name)
        return t is not None and t.kind == "resource" and not t.abstract

    def resource_types(self) -> list[str]:
        return sorted(n for n in self.types if self.is_resource(n))

    def value_set_codes(self, url: str) -> dict[str, list[str]] | None:
        """{system: codes} of a closed required-binding value set, or None if not shipped."""
        return self.valuesets.get(url.split("|", 1)[0])
