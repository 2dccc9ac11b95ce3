"""Operations of the FHIR core; one module each. Feature packages register theirs at wiring time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fhir_server.router import FhirRouter


def register_core_operations(router: FhirRouter) -> None:
    from fhir_server.operations import lastn, meta, patient_everything, reindex

    try:
        from fhir_server.operations.validate import validate_operation
    except ImportError:  # validation package still being built
        pass
    else:
        router.register_operation("validate", validate_operation, level=("type", "instance"),
                                  methods=("POST", "GET"),
                                  definition="http://hl7.org/fhir/OperationDefinition/Resource-validate")
    router.register_operation("everything", patient_everything.everything, level=("instance", "type"),
                              resource_types=["Patient"],
                              definition="http://hl7.org/fhir/OperationDefinition/Patient-everything")
    router.register_operation("lastn", lastn.lastn, level="type", resource_types=["Observation"],
                              definition="http://hl7.org/fhir/OperationDefinition/Observation-lastn")
    router.register_operation("meta", meta.meta, level=("system", "type", "instance"),
                              definition="http://hl7.org/fhir/OperationDefinition/Resource-meta")
    router.register_operation("meta-add", meta.meta_add, level="instance", methods=("POST",), affects_state=True,
                              definition="http://hl7.org/fhir/OperationDefinition/Resource-meta-add")
    router.register_operation("meta-delete", meta.meta_delete, level="instance", methods=("POST",),
                              affects_state=True,
                              definition="http://hl7.org/fhir/OperationDefinition/Resource-meta-delete")
    router.register_operation("reindex", reindex.reindex, level=("system", "type"), methods=("POST", "GET"),
                              affects_state=True)
