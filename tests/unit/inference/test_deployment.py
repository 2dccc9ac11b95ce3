from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deployment" / "triton" / "k8s" / "triton.yaml"


def docs():
    return {d["kind"]: d for d in yaml.safe_load_all(K8S.read_text())}


def test_triton_deployment_requests_gpus_and_probes_readiness():
    dep = docs()["Deployment"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8002"


def test_api_config_points_at_the_triton_service():
    d = docs()
    svc = d["Service"]["metadata"]["name"]
    url = d["ConfigMap"]["data"]["DIGITALFRONT_TRITON_URL"]
    assert d["ConfigMap"]["data"]["DIGITALFRONT_INFERENCE"] == "triton"
    assert url == f"grpc://{svc}:8001"
    from inference import get_model_client

    client = get_model_client({"inference_backend": "triton", "triton_url": url})
    assert client.backend == "triton-grpc"


def test_dockerfile_selects_the_gpu_configs():
    text = (ROOT / "deployment" / "triton" / "Dockerfile").read_text()
    assert "--model-config-name=gpu" in text and "/models" in text
