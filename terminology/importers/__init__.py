"""Importers for big code systems in their native release formats (files the user supplies)."""
