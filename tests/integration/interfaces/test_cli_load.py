"""``digitalfront hl7 load`` and ``hl7 replay``: files in order, group commit, same rules as MLLP."""

from __future__ import annotations

from click.testing import CliRunner

from interfaces.cli import hl7
from tests.integration.interfaces.test_group_commit import oru
from tests.integration.interfaces.test_through_router import adt


def test_load_a_directory_then_replay(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path}/load.db"
    monkeypatch.setenv("DIGITALFRONT_DATABASE_URL", db)
    monkeypatch.setenv("DIGITALFRONT_AUTH", "off")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # 70 messages in one FHS/BHS batch file (more than one group of 64), then a second file, in name order
    batch = "FHS|^~\\&|LAB|HOSP\rBHS|^~\\&|LAB|HOSP\r" + "".join(
        oru(f"ld-{i}", mrn=str(600 + i % 5)).decode() for i in range(70)) + "BTS|70\rFTS|1\r"
    (inbox / "a_batch.hl7").write_text(batch)
    bad = adt("A01", "ld-bad", mrn="699").replace(b"|19800101|", b"|1980-01-01|")
    (inbox / "b_more.hl7").write_bytes(adt("A08", "ld-a08", mrn="600", family="Later") + b"\r" + bad)
    runner = CliRunner()
    out = runner.invoke(hl7, ["load", str(inbox)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "processed=71" in out.output and "error=1" in out.output
    out = runner.invoke(hl7, ["load", str(inbox)], catch_exceptions=False)  # the same files again
    assert "duplicate=72" in out.output
    out = runner.invoke(hl7, ["replay", "--status", "error"], catch_exceptions=False)
    assert out.output.strip() == "AE=1"  # still unparsable PID-7: replay answers the same
    out = runner.invoke(hl7, ["replay", "--id", "99999999999999999999999"])  # past 64 bits: was a traceback
    assert out.exit_code == 2 and "99999999999999999999999" in out.output and "Traceback" not in out.output

    from digitalfront.app import build_services
    from digitalfront.config import Settings

    services = build_services(Settings(database_url=db, auth=False))
    (patient,) = services.client.search("Patient", [("identifier", "urn:oid:1.2.3|600")])
    assert patient["name"][0]["family"] == "Later"  # the A08 of the later file was applied after the ORUs
    assert len(services.client.search("DiagnosticReport", [("_count", "200")])) == 70


def test_load_reports_a_file_without_messages_and_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITALFRONT_DATABASE_URL", f"sqlite:///{tmp_path}/load.db")
    monkeypatch.setenv("DIGITALFRONT_AUTH", "off")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.hl7").write_bytes(adt("A01", "ld-one", mrn="650"))
    (inbox / "b.csv").write_text("mrn,name\n650,Doe\n")
    out = CliRunner().invoke(hl7, ["load", str(inbox)], catch_exceptions=False)
    assert out.exit_code == 1 and "processed=1" in out.output and "no-message=1" in out.output, out.output
    assert "b.csv: no HL7v2 message in it" in out.output


def test_shipped_demo_messages_all_apply(tmp_path, monkeypatch):
    """The README's HL7v2 examples send digitalfront/demo_data/hl7v2/: every one of them is applied (AA)."""
    from interfaces.tools.ig_samples import DEMO_DIR

    monkeypatch.setenv("DIGITALFRONT_DATABASE_URL", f"sqlite:///{tmp_path}/demo.db")
    monkeypatch.setenv("DIGITALFRONT_AUTH", "off")
    files = sorted(DEMO_DIR.glob("*.hl7"))
    assert len(files) == 7
    out = CliRunner().invoke(hl7, ["load", str(DEMO_DIR)], catch_exceptions=False)
    assert out.exit_code == 0 and out.output.strip().endswith("processed=7"), out.output


def test_shipped_demo_messages_are_the_ig_samples():
    from interfaces.tools.ig_samples import DEMO_DIR
    from tests.unit.interfaces.hl7_testkit import ig_messages

    samples = ig_messages()  # skips, saying so, without ../shared
    assert {p.stem.upper() for p in DEMO_DIR.glob("*.hl7")} == set(samples)
    for structure, text in samples.items():
        assert (DEMO_DIR / f"{structure.lower()}.hl7").read_bytes() == text.encode("utf-8"), structure


def test_replay_by_time_window_takes_only_the_messages_received_in_it(tmp_path, monkeypatch):
    """``--since`` (inclusive) and ``--until`` (exclusive) select by the store's received time, in UTC."""
    import time
    from datetime import UTC, datetime

    monkeypatch.setenv("DIGITALFRONT_DATABASE_URL", f"sqlite:///{tmp_path}/window.db")
    monkeypatch.setenv("DIGITALFRONT_AUTH", "off")
    runner = CliRunner()
    marks = []
    for i, name in enumerate(("before", "inside", "after")):
        (tmp_path / f"{name}.hl7").write_bytes(adt("A01", f"w-{name}", mrn=str(810 + i)))
        if i:
            time.sleep(0.05)
            marks.append(datetime.now(UTC).isoformat())
            time.sleep(0.05)
        out = runner.invoke(hl7, ["load", str(tmp_path / f"{name}.hl7")], catch_exceptions=False)
        assert "processed=1" in out.output, out.output
    out = runner.invoke(hl7, ["replay", "--since", marks[0], "--until", marks[1]], catch_exceptions=False)
    assert out.output.strip() == "AA=1"
    out = runner.invoke(hl7, ["replay", "--since", marks[0]], catch_exceptions=False)
    assert out.output.strip() == "AA=2"
    out = runner.invoke(hl7, ["replay", "--until", marks[0]], catch_exceptions=False)
    assert out.output.strip() == "AA=1"
    out = runner.invoke(hl7, ["replay", "--since", "yesterday"])
    assert out.exit_code == 2 and "not an ISO 8601 date/time: yesterday" in out.output
