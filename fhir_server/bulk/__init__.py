"""Bulk Data Access ($export): persisted jobs and the background runner that writes NDJSON."""
