"""The CapabilityStatement ``rest.security`` block (the Python fhirclient reads only this)."""

from __future__ import annotations

from typing import Any

from smart_apps.endpoints import urls

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def security_component(base_url: str) -> dict[str, Any]:
    u = urls(base_url.rstrip("/"))
    names = {
        "authorize": "authorization_endpoint",
        "token": "token_endpoint",
        "introspect": "introspection_endpoint",
        "revoke": "revocation_endpoint",
        "register": "registration_endpoint",
        "manage": "management_endpoint",
    }
    return {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 using SMART-on-FHIR profile",
            }
        ],
        "extension": [
            {"url": OAUTH_URIS, "extension": [{"url": k, "valueUri": u[v]} for k, v in names.items()]}
        ],
    }
