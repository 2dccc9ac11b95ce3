"""The search corpus, loaded once per database for the whole folder (SQLite and PostgreSQL).

Tests here only read it, so the differential and the feature modules share one load.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import create_pg_database, drop_pg_database, pg_error
from tests.integration.search import corpus
from tests.integration.search.evaluator import Evaluator


@pytest.fixture(scope="package")
def data() -> tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]:
    resources = corpus.synthea_resources() + corpus.example_resources() + corpus.edge_resources()
    return resources, corpus.search_parameters()


class World:
    def __init__(self, services: Any, evaluator: Evaluator) -> None:
        self.services = services
        self.ev = evaluator


@pytest.fixture(scope="package", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          data: tuple[list[dict[str, Any]], dict[tuple[str, str], dict[str, Any]]]) -> Iterator[World]:
    from digitalfront.app import build_services
    from digitalfront.config import Settings

    pg_name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('search')}/fhir.db"
    else:
        err = pg_error()
        if err:
            pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {err}")
        pg_name = create_pg_database()
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"
    services = build_services(Settings(database_url=url, auth=False, validate_writes=False))
    resources, params = data
    accepted = corpus.load(services, resources)
    assert len(accepted) > 3500
    from terminology.service import TerminologyService

    terminology = TerminologyService(services.engine)
    vs, cs = corpus.package_resource("ValueSet-observation-vitalsignresult.json"), corpus.package_resource(
        "CodeSystem-condition-clinical.json")
    terminology.load_resources([vs, cs], origin="search-tests")
    services.terminology = terminology
    services.router.terminology = terminology
    yield World(services, Evaluator(accepted, params, value_sets=[vs], code_systems=[cs]))
    services.engine.dispose()
    if pg_name:
        drop_pg_database(pg_name)


