"""The inference plugin as wired by ``digitalfront.app.create_app`` with every other plugin."""

from __future__ import annotations

import requests

from tests.conftest import start_live_server
from tests.integration.inference.inference_helpers import dicom_file


def test_models_and_analyze_in_the_full_app(app_factory):
    live, stop = start_live_server(app_factory(extra={"terminology_autoload": "0"}))
    try:
        models = requests.get(f"{live.url}/inference/models", timeout=30).json()
        assert {"imaging_cnn", "readmission_risk"} <= {m["name"] for m in models["models"]}
        r = requests.post(f"{live.base}/ImagingStudy/$analyze", data=dicom_file("MR_small.dcm"),
                          headers={"Content-Type": "application/dicom"}, timeout=60)
        assert r.status_code == 200, r.text
        report = [p for p in r.json()["parameter"] if p["name"] == "report"][0]["valueReference"]["reference"]
        assert requests.get(f"{live.base}/{report}", timeout=30).json()["status"] == "preliminary"
    finally:
        stop()
