"""`digitalfront nlp FILE...`: run the pipeline over text files and print mentions or a FHIR Bundle."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command("nlp")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["mentions", "bundle", "table"]), default="table",
              show_default=True, help="table: one line per mention; mentions: JSON lines; bundle: FHIR Bundle JSON.")
@click.option("--patient", default="Patient/unknown", show_default=True, help="Subject reference for --format bundle.")
@click.option("--include-hypothetical", is_flag=True, help="Keep hypothetical mentions in the Bundle.")
def nlp(files: tuple[Path, ...], fmt: str, patient: str, include_hypothetical: bool) -> None:
    """Extract coded clinical concepts from clinical notes (plain-text files)."""
    from nlp.fhir_mapping import text_ref, to_bundle
    from nlp.pipeline import ClinicalNlp

    pipeline = ClinicalNlp()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"{path}: not UTF-8 text") from exc
        mentions = pipeline.extract(text)
        if fmt == "bundle":
            bundle = to_bundle(mentions, patient, text_ref(text), text=text, include_hypothetical=include_hypothetical)
            click.echo(json.dumps(bundle, indent=1))
        elif fmt == "mentions":
            for m in mentions:
                click.echo(json.dumps({"file": str(path), **m.to_dict()}))
        else:
            for m in mentions:
                flags = "".join(f for f, on in (("N", m.negated), ("H", m.historical), ("Y", m.hypothetical),
                                                ("F", m.family), ("U", m.uncertain)) if on) or "-"
                code = m.codes[0].code if m.codes else ""
                click.echo(f"{path.name}\t{m.start}-{m.end}\t{m.category}\t{m.concept_id}\t{code}\t{flags}\t"
                           f"{m.section or ''}\t{m.text}")
    sys.stdout.flush()
