import pytest


@pytest.fixture(scope="session")
def nlp():
    from nlp.pipeline import ClinicalNlp

    return ClinicalNlp()
