"""One module per FHIR REST interaction (http.html)."""
