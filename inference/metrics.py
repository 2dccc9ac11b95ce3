"""Process-local counters for inference (requests, errors, fall-backs, latency)."""

from __future__ import annotations

import threading
from collections import defaultdict

_lock = threading.Lock()
_counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)



Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    """A counter's identity, computed once by hot paths and passed to ``add``."""
    return (name, tuple(sorted(labels.items())))


def add(k: Key, value: float = 1.0) -> None:
    with _lock:
        _counters[k] += value


def inc(name: str, value: float = 1.0, **labels: str) -> None:
    add(key(name, **labels), value)


def get(name: str, **labels: str) -> float:
    with _lock:
        return _counters.get((name, tuple(sorted(labels.items()))), 0.0)


def snapshot() -> dict[str, float]:
    with _lock:
        items = list(_counters.items())
    out = {}
    for (name, labels), value in items:
        label_text = ",".join(f'{k}="{v}"' for k, v in labels)
        out[f"{name}{{{label_text}}}" if label_text else name] = value
    return out


def prometheus_text() -> str:
    return "".join(f"digitalfront_{k} {v:g}\n" for k, v in sorted(snapshot().items()))
