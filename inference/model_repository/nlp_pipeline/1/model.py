"""Triton python-backend model running the clinical NLP pipeline (``nlp.pipeline.ClinicalNlp``).

Input ``text`` [N, 1] BYTES (UTF-8 notes); outputs, each [N, 1] BYTES, UTF-8 JSON:
``mentions`` (``Mention.to_dict()`` list, character offsets into the note) and ``bundle``
(``nlp.fhir_mapping.to_bundle`` collection Bundle; subject = config parameter ``patient_reference``).
Only the requested outputs are computed.

The same file runs in-process (``inference/pb_shim.py`` stands in for ``triton_python_backend_utils``)
and inside Triton's python backend stub. The stub's interpreter is the Triton environment's
(``.venv-triton``), which has neither our ``nlp`` package nor medSpaCy, so ``initialize`` makes them
importable when they are not already: it appends the project root (``DIGITALFRONT_HOME``, else the
folder above this repository that holds ``nlp/pipeline.py``) and our virtual environment's
site-packages (``DIGITALFRONT_VENV``, else ``<project root>/.venv``) to ``sys.path``. Appended, not
prepended, so the Triton environment's own packages win; the Python minor version must match.
"""

import json
import os
import site
import sys
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _importable() -> bool:
    try:
        import medspacy  # noqa: F401

        import nlp.pipeline  # noqa: F401
    except ImportError:
        return False
    return True


def _project_root(model_dir: Path) -> Path | None:
    env = os.environ.get("DIGITALFRONT_HOME")
    if env:
        return Path(env)
    for parent in model_dir.resolve().parents:
        if (parent / "nlp" / "pipeline.py").is_file():
            return parent
    return None


def _tolerate_missing_tls() -> None:
    """pytriton's stub embeds an older CPython 3.11 that cannot load the host's ``_ssl`` extension
    (undefined symbol), so ``http.client`` has no ``HTTPSConnection``; nltk (medspacy -> quickumls ->
    nltk) subclasses it at import time. The pipeline never uses the network: give nltk a class that
    refuses to connect."""
    import http.client

    if hasattr(http.client, "HTTPSConnection"):
        return

    class _NoTlsConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            raise OSError("TLS is not available in this interpreter (Triton python backend stub)")

    http.client.HTTPSConnection = _NoTlsConnection  # type: ignore[misc,assignment]


def ensure_importable(model_dir: Path) -> None:
    """Make ``nlp`` and medSpaCy importable in a foreign interpreter (Triton's stub), or say why not."""
    _tolerate_missing_tls()
    if _importable():
        return
    root = _project_root(model_dir)
    if root is None:
        raise RuntimeError("nlp_pipeline: the DigitalFront 'nlp' package is not importable and no project root "
                           "was found above the model; set DIGITALFRONT_HOME to the project folder")
    if str(root) not in sys.path:
        sys.path.append(str(root))
    venv = Path(os.environ.get("DIGITALFRONT_VENV") or root / ".venv")
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = venv / "lib" / pyver / "site-packages"
    if site_packages.is_dir():
        site.addsitedir(str(site_packages))  # appends, and reads .pth files (an editable install)
    if not _importable():
        raise RuntimeError(f"nlp_pipeline: cannot import nlp/medspacy with {sys.executable} ({pyver}); looked in "
                           f"{root} and {site_packages}; install the project into this environment or set "
                           "DIGITALFRONT_VENV to a virtual environment of the same Python version that has it")


class TritonPythonModel:
    def initialize(self, args):
        ensure_importable(Path(args["model_repository"]))
        from nlp.fhir_mapping import text_ref, to_bundle
        from nlp.pipeline import shared_pipeline

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.patient_ref = params.get("patient_reference", "Patient/unknown")
        self.include_hypothetical = params.get("include_hypothetical", "false").lower() == "true"
        self.outputs = [o["name"] for o in config["output"]]
        self.pipeline: Any = shared_pipeline()  # in-process: the one the API already built
        self.to_bundle = to_bundle
        self.text_ref = text_ref

    def _note(self, text, want):
        mentions = self.pipeline.extract(text)
        out = {}
        if "mentions" in want:
            out["mentions"] = json.dumps([m.to_dict() for m in mentions], separators=(",", ":"))
        if "bundle" in want:
            bundle = self.to_bundle(mentions, self.patient_ref, self.text_ref(text), text=text,
                                    include_hypothetical=self.include_hypothetical)
            out["bundle"] = json.dumps(bundle, separators=(",", ":"))
        return out

    def _execute_one(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, "text")
        if tensor is None:
            raise ValueError("input 'text' is required")
        notes = tensor.as_numpy().reshape(-1)
        want = [o for o in (request.requested_output_names() or self.outputs) if o in self.outputs] or self.outputs
        rows = []
        for note in notes:
            if isinstance(note, bytes):
                note = note.decode("utf-8")  # UnicodeDecodeError is a ValueError: reported, not fatal
            elif not isinstance(note, str):
                raise ValueError(f"input 'text' must be UTF-8 bytes, got {type(note).__name__}")
            rows.append(self._note(note, want))
        tensors = [pb_utils.Tensor(name, np.array([[r[name].encode("utf-8")] for r in rows], dtype=np.object_))
                   for name in want]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._execute_one(request))
            except ValueError as exc:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc))))
        return responses

    def finalize(self):
        self.pipeline = None
