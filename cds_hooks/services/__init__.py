"""Built-in CDS services: every module here exposing ``SERVICE`` is discovered."""
