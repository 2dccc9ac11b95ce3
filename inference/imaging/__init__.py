"""Imaging pipeline: DICOM in, model findings out as FHIR."""
