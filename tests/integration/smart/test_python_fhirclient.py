"""The Python ``fhirclient`` (SMART's reference Python client) does a standalone launch."""

from __future__ import annotations

from fhirclient import client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

from tests.integration.smart.smart_flow import login_and_consent


def test_python_fhirclient_standalone_launch(smart_server):
    settings = {"app_id": smart_server.public_client, "api_base": smart_server.base,
                "redirect_uri": "http://127.0.0.1/cb", "scope": "launch/patient openid fhirUser patient/*.rs"}
    smart = client.FHIRClient(settings=settings)
    assert not smart.ready
    auth_url = smart.authorize_url  # reads oauth-uris from our CapabilityStatement
    assert auth_url.startswith(smart_server.url + "/oauth/authorize")
    q = login_and_consent(smart_server, {}, "pat", "pat-pass", url=auth_url)
    smart.handle_callback(q["_location"])
    assert smart.ready and smart.patient_id == "example"
    patient = Patient.read(smart.patient_id, smart.server)
    assert patient.id == "example" and patient.name[0].family == "Chalmers"
    obs = Observation.read("example", smart.server)
    assert obs.subject.reference == "Patient/example"
