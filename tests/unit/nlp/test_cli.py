from __future__ import annotations

import json

from click.testing import CliRunner

from nlp.cli import nlp


def test_cli_table_and_bundle(tmp_path):
    f = tmp_path / "note.txt"
    f.write_text("Denies chest pain. On metformin for type 2 diabetes.")
    r = CliRunner().invoke(nlp, [str(f)])
    assert r.exit_code == 0, r.output
    lines = [line.split("\t") for line in r.output.strip().splitlines()]
    assert [(x[3], x[5]) for x in lines] == [("chest_pain", "N"), ("metformin", "-"), ("diabetes_type2", "-")]
    r = CliRunner().invoke(nlp, [str(f), "--format", "bundle", "--patient", "Patient/7"])
    assert r.exit_code == 0
    bundle = json.loads(r.output)
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 4


def test_cli_missing_file():
    r = CliRunner().invoke(nlp, ["/nonexistent/x.txt"])
    assert r.exit_code == 2
