"""WSGI entry point and the gunicorn runner.

gunicorn (not waitress): several worker processes use both cores despite the
GIL, the gthread worker keeps slow clients from blocking a process, and it is
the server most Python deployments already operate. Each worker builds its own
app (no shared state besides the database), so it scales by processes and pods.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication


def application_factory() -> Any:
    import gc
    import os

    from digitalfront.app import build_services, create_app

    os.environ.setdefault("DIGITALFRONT_CDS_WARM", "on")  # load the NLP pipeline before the first CDS call
    app = create_app(services=build_services(migrate=False))
    gc.freeze()  # start-up objects (models, definitions) leave the GC's scans: shorter request-time pauses
    return app


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for k, v in self.options.items():
            self.cfg.set(k, v)

    def load(self) -> Any:
        return application_factory()


def run_gunicorn(host: str, port: int, workers: int, threads: int) -> None:
    _Gunicorn({"bind": f"{host}:{port}", "workers": workers, "threads": threads, "worker_class": "gthread",
               "timeout": 120, "graceful_timeout": 10, "accesslog": None, "loglevel": "info"}).run()
