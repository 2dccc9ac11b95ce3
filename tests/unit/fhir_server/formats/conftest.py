import pytest

from terminology.packages import shared_package


@pytest.fixture(scope="session")
def r4_examples_package():
    pkg = shared_package("hl7.fhir.r4.examples")
    if pkg is None:
        pytest.skip("../shared/fhir-packages/hl7.fhir.r4.examples-4.0.1.tgz not available")
    return pkg
