"""The optional packages wired into the app and the CLI.

Each listed module exposes ``init_app(app, services)`` (web) or a click
command/group (CLI). A module that does not exist yet is skipped, so the core
runs while a feature package is still being built.
"""

from __future__ import annotations

# module path, attribute
WEB_PLUGINS: list[tuple[str, str]] = [
    ("terminology.web", "init_app"),
    ("interfaces.web", "init_app"),
    ("smart_apps.web", "init_app"),
    ("nlp.web", "init_app"),
    ("inference.web", "init_app"),
    ("cds_hooks.web", "init_app"),
]

CLI_PLUGINS: list[tuple[str, str]] = [
    ("interfaces.cli", "hl7"),
    ("interfaces.cli", "mllp"),
    ("terminology.cli", "terminology"),
    ("smart_apps.cli", "smart"),
    ("nlp.cli", "nlp"),
    ("inference.cli", "models"),
    ("cds_hooks.cli", "cds"),
]
