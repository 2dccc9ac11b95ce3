"""CDS Hooks 2.0: discovery, service invocation, prefetch, JWT client auth, feedback and cards.

Services are plugins (one module each under ``cds_hooks.services``); the Flask
wiring is in ``cds_hooks.web`` and nothing in the core depends on this package.
"""
