"""A real WSGI server with the FHIR core and the inference plugin only, so these
tests do not depend on the other feature packages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.inference.inference_helpers import Live, build_app, serve


@pytest.fixture
def inference_server_factory(services_factory: Callable[..., Any]) -> Iterator[Callable[..., Live]]:
    stops: list[Callable[[], None]] = []

    def make(**overrides: Any) -> Live:
        live, stop = serve(build_app(services_factory(**overrides)))
        stops.append(stop)
        return live

    yield make
    for stop in stops:
        stop()


@pytest.fixture
def inference_server(inference_server_factory: Callable[..., Live]) -> Live:
    return inference_server_factory()
