"""Turn a FHIRPath expression into JSON locations inside the resource being patched.

FHIRPath evaluation returns values, but a patch needs *places*. fhirpathpy is
asked for its raw result nodes (``returnRawData``), and each node is mapped
back to a location (a tuple of keys and list indexes from the resource root):

* complex values (JSON objects) by object identity: the evaluation runs on the
  very dicts of the document, so an ``id() -> location`` index of the tree
  finds them exactly, whatever functions (``where``, ``ofType``, ``first``,
  ``extension(url)``...) produced them;
* primitive values (strings, numbers, booleans have no usable identity) by the
  node's ``propName`` (``Patient.name[0].given[1]``), which fhirpathpy records
  during member navigation; the walk also maps a choice name (``value``) to
  its typed JSON key (``valueQuantity``) and checks the value found is the one
  returned.

A node that is neither (a literal, ``count()``, a union, which fhirpathpy
rebuilds without locations) cannot be patched: that is a 400.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_server.errors import bad_request, unprocessable

Location = tuple[str | int, ...]

_SEGMENT = re.compile(r"^([A-Za-z][A-Za-z0-9]*)(?:\[(\d+)\])?$")
_MAX_PATH = 4096


# ``div`` and ``mod`` are FHIRPath operators, but ``Narrative.div`` is an element name that
# patch paths use unquoted (``Patient.text.div``, as in the official test cases).
_KEYWORD_MEMBER = re.compile(r"\.(div|mod)(?=$|[.\[\s)|])")
_STRING_LITERAL = re.compile(r"('(?:[^'\\]|\\.)*')")


def quote_keyword_members(path: str) -> str:
    """``Patient.text.div`` -> ``Patient.text.`div``` (outside string literals)."""
    pieces = _STRING_LITERAL.split(path)
    return "".join(p if i % 2 else _KEYWORD_MEMBER.sub(r".`\1`", p) for i, p in enumerate(pieces))


class _RaisingListener(ErrorListener):
    def syntaxError(self, recognizer: Any, offendingSymbol: Any, line: int, column: int,  # noqa: N802,N803
                    msg: str, e: Any) -> None:
        raise ValueError(f"at character {column}: {msg}")


def check_syntax(path: str) -> None:
    """fhirpathpy's parser recovers silently from syntax errors; a patch path must not."""
    lexer = FHIRPathLexer(InputStream(path))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_RaisingListener())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_RaisingListener())
    parser.expression()
    if tokens.LA(1) != Token.EOF:
        raise ValueError("unexpected input after the expression")


@lru_cache(maxsize=512)
def _compiled(path: str) -> Any:
    check_syntax(quote_keyword_members(path))
    return fhirpathpy.compile(quote_keyword_members(path), model=models["r4"],
                              options={"returnRawData": True})


def evaluate_nodes(resource: dict[str, Any], path: str) -> list[Any]:
    """Evaluate ``path`` on ``resource`` (not copied) and return fhirpathpy's raw nodes."""
    if not path.strip() or len(path) > _MAX_PATH:
        raise bad_request(f"Invalid FHIRPath patch path {path[:80]!r}", code="invalid")
    try:
        fn = _compiled(path)
    except Exception as exc:  # the ANTLR parser raises plain Exceptions of several kinds
        raise bad_request(f"The patch path {path!r} is not valid FHIRPath: {exc}", code="invalid") from exc
    try:
        result = fn(resource)
    except RecursionError as exc:
        raise bad_request(f"The patch path {path!r} is too deeply nested", code="invalid") from exc
    except Exception as exc:  # evaluation errors (bad function arguments, type errors)
        raise bad_request(f"The patch path {path!r} cannot be evaluated: {exc}", code="invalid") from exc
    return result if isinstance(result, list) else [result]


def _identity_index(root: Any) -> dict[int, Location]:
    index: dict[int, Location] = {}
    stack: list[tuple[Any, Location]] = [(root, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, dict):
            index[id(value)] = loc
            for k, v in value.items():
                if isinstance(v, dict | list):
                    stack.append((v, (*loc, k)))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if isinstance(v, dict | list):
                    stack.append((v, (*loc, i)))
    return index


def _choice_key(container: dict[str, Any], name: str) -> str | None:
    for key in container:
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            return key
    return None


def _walk_prop_name(root: dict[str, Any], prop_name: str) -> Location | None:
    """Follow ``Patient.name[0].given[1]`` (first segment is the root type) through the JSON."""
    segments = prop_name.split(".")[1:]
    cur: Any = root
    loc: list[str | int] = []
    for seg in segments:
        m = _SEGMENT.match(seg)
        if m is None:
            return None
        if not isinstance(cur, dict) and loc:  # below a primitive: its ``_name`` companion
            cur = _companion(root, tuple(loc))
            loc = list(_to_companion(tuple(loc)))
        if not isinstance(cur, dict):
            return None
        key = m.group(1)
        if key not in cur:
            choice = _choice_key(cur, key)
            if choice is None:
                return None
            key = choice
        cur = cur[key]
        loc.append(key)
        if m.group(2) is not None:
            i = int(m.group(2))
            if not isinstance(cur, list) or i >= len(cur):
                return None
            cur = cur[i]
            loc.append(i)
        elif isinstance(cur, list):
            return None
    return tuple(loc)


def _to_companion(loc: Location) -> Location:
    if loc and isinstance(loc[-1], int):
        return (*loc[:-2], f"_{loc[-2]}", loc[-1])
    return (*loc[:-1], f"_{loc[-1]}")


def _companion(root: dict[str, Any], loc: Location) -> Any:
    try:
        return get_at(root, _to_companion(loc))
    except (KeyError, IndexError, TypeError):
        return None


def _same_primitive(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _from_companion(loc: Location) -> Location:
    """``(..., '_given', 1)`` (a primitive's id/extension holder) means the primitive itself."""
    for pos in range(len(loc) - 1, -1, -1):
        key = loc[pos]
        if isinstance(key, str):
            if key.startswith("_"):
                return (*loc[:pos], key[1:], *loc[pos + 1:pos + 2])
            return loc
    return loc


def get_at(root: Any, loc: Location) -> Any:
    cur = root
    for step in loc:
        cur = cur[step]
    return cur


def locate(resource: dict[str, Any], path: str, depth: int = 0) -> list[Location]:
    """The distinct locations of the elements that ``path`` selects, in result order."""
    nodes = evaluate_nodes(resource, path)
    index: dict[int, Location] | None = None
    found: list[Location] = []
    unlocated = False
    for node in nodes:
        if not isinstance(node, ResourceNode):
            raise bad_request(f"The patch path {path!r} does not select elements of the resource "
                              f"(it evaluates to the value {node!r})", code="invalid")
        data = node.data
        loc: Location | None
        if data is None:
            continue  # padding of a ``_given``-style companion list
        if isinstance(data, dict | list):
            if index is None:
                index = _identity_index(resource)
            loc = index.get(id(data))
            if loc is None:
                raise bad_request(f"The patch path {path!r} selects content that is not part of the "
                                  "resource (a computed value)", code="invalid")
            loc = _from_companion(loc)
        else:
            if not node.propName:
                raise bad_request(f"The patch path {path!r} selects computed values, not elements of "
                                  "the resource", code="invalid")
            loc = _walk_prop_name(resource, node.propName)
            if loc is None or not _same_primitive(get_at(resource, loc), data):
                unlocated = True
                continue
        if loc not in found:
            found.append(loc)
    if unlocated:
        # fhirpathpy drops locations after some functions (``extension(url).value``): take the
        # owners of the last member instead and read the member ourselves
        by_parent = _locate_by_parent(resource, path, depth)
        if by_parent is None:
            raise unprocessable(f"Cannot locate the elements selected by {path!r}")
        return by_parent
    return found


def _locate_by_parent(resource: dict[str, Any], path: str, depth: int) -> list[Location] | None:
    split = split_last_member(path)
    if split is None or depth > 32:
        return None
    parent, name, index = split
    found: list[Location] = []
    for ploc in locate(resource, parent, depth + 1):
        container = get_at(resource, ploc)
        if not isinstance(container, dict):
            continue
        key = name if name in container else _choice_key(container, name)
        if key is None:
            continue
        value = container[key]
        if isinstance(value, list):
            found.extend((*ploc, key, i) for i, v in enumerate(value) if v is not None)
        elif value is not None:
            found.append((*ploc, key))
    if index is not None:
        return found[index:index + 1]
    return found


_LAST_MEMBER = re.compile(r"^(?P<parent>.+)\.(?P<name>[A-Za-z][A-Za-z0-9]*)(?:\[(?P<index>\d+)\])?$")


def split_last_member(path: str) -> tuple[str, str, int | None] | None:
    """``Patient.name[0].given[1]`` -> (``Patient.name[0]``, ``given``, 1)."""
    m = _LAST_MEMBER.match(path.strip())
    if m is None:
        return None
    parent = m.group("parent")
    if parent.count("(") != parent.count(")") or parent.count("'") % 2:
        return None
    index = m.group("index")
    return parent, m.group("name"), int(index) if index is not None else None
