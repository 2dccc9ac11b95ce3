"""The MLLP listener over real sockets, with the ``hl7`` package's MLLP client as the peer."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time

import hl7.client
import pytest

from fhir_server.storage.engine import make_engine
from interfaces.client import MllpClient, ack_code, split_batch
from interfaces.framing import FS, VT, frame
from interfaces.mllp import start_pipeline_listener, tls_context
from interfaces.pipeline import Hl7Pipeline
from interfaces.store import MessageStore
from tests.unit.interfaces.hl7_testkit import RecordingWriter, ig_messages

MSG = ("MSH|^~\\&|LAB|HOSP|DF|DF|20240101120000||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
       "PID|1||{mrn}^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F\r"
       "OBR|1|P{cid}^LAB|F{cid}^LAB|2345-7^Glucose^LN|||20240101110000||||||||||||||||F\r"
       "OBX|1|NM|2345-7^Glucose^LN||95|mg/dL^mg/dL^UCUM|70-99|N|||F\r")


def msg(cid: str, mrn: str = "1") -> bytes:
    return MSG.format(cid=cid, mrn=mrn).encode()


@pytest.fixture
def listener(tmp_path):
    store = MessageStore(make_engine(f"sqlite:///{tmp_path}/hl7.db"))
    writer = RecordingWriter()
    handle = start_pipeline_listener(Hl7Pipeline(store, writer), "127.0.0.1", 0, idle_timeout=2.0,
                                     max_message_bytes=64 * 1024)
    handle.store, handle.writer = store, writer
    yield handle
    handle.stop()


def test_hl7_package_client_gets_aa_for_several_messages_on_one_connection(listener):
    with hl7.client.MLLPClient("127.0.0.1", listener.port) as client:
        acks = [client.send_message(msg(f"c{i}")) for i in range(5)]
    assert [hl7.parse(a.decode() if isinstance(a, bytes) else a).segment("MSA")[1][0] for a in acks] == ["AA"] * 5
    assert listener.store.counts()["processed"] == 5


def test_partial_frames_and_garbage_between_frames(listener):
    data = b"\r\n\x00line noise" + frame(msg("p1")) + b"xx" + frame(msg("p2"))
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        for i in range(0, len(data), 7):  # dribble 7 bytes at a time
            s.sendall(data[i:i + 7])
            time.sleep(0.001)
        client = MllpClient.__new__(MllpClient)
        client.sock, client.decoder, client._pending = s, __import__("interfaces.framing").framing.FrameDecoder(), []
        acks = client.receive(2)
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    assert listener.server.stats.discarded_bytes >= len(b"\r\n\x00line noise") + 2


def test_connection_dropped_mid_frame_stores_nothing(listener):
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        s.sendall(VT + msg("half")[:40])
    deadline = time.time() + 5
    while listener.server.stats.dropped_partial == 0 and time.time() < deadline:
        time.sleep(0.02)
    assert listener.server.stats.dropped_partial == 1
    assert sum(listener.store.counts().values()) == 0


def test_idle_connection_is_closed(listener):
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        s.settimeout(10)
        assert s.recv(10) == b""  # server closed after the 2 s idle timeout
    assert listener.server.stats.idle_timeouts == 1


def test_oversized_message_gets_ar_and_connection_stays_usable(listener):
    huge = msg("big") + b"NTE|1||" + b"x" * 70_000 + b"\r"
    with MllpClient("127.0.0.1", listener.port) as c:
        assert ack_code(c.send(huge)[0]) == "AR"
        assert ack_code(c.send(msg("after"))[0]) == "AA"


def test_enhanced_mode_sends_commit_then_application_ack(listener):
    enhanced = msg("enh").replace(b"|P|2.5.1\r", b"|P|2.5.1|||AL|AL\r")
    with MllpClient("127.0.0.1", listener.port) as c:
        assert [ack_code(a) for a in c.send(enhanced, expect=2)] == ["CA", "AA"]
        # a re-send (the application ACK was lost, say) gets both frames again: before, only the AA came back
        # and a sender waiting for two frames timed out
        again = c.send(enhanced, expect=2)
        assert [ack_code(a) for a in again] == ["CA", "AA"]
        assert b"MSA|CA|enh|" in again[0] and b"MSA|AA|enh|" in again[1]


def test_batch_file_with_fhs_bhs_wrappers(listener, tmp_path):
    batch = ("FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + msg("b1").decode() + msg("b2").decode() + "BTS|2\rFTS|1\r")
    parts = split_batch(batch)
    assert len(parts) == 2 and all(p.startswith("MSH") for p in parts)
    with MllpClient("127.0.0.1", listener.port) as c:
        assert [ack_code(c.send(p.encode())[0]) for p in parts] == ["AA", "AA"]


def test_a_batch_in_one_frame_is_answered_with_a_batch_of_acks(listener):
    """A sender may frame a whole FHS/BHS batch: each message is ingested as if framed alone and the answer
    is one frame, a BHS ... BTS batch of their ACKs (it was one AR: 'does not start with an MSH segment')."""
    bad = msg("bf2").replace(b"|19800101|", b"|1980-01-01|")
    batch = b"FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + msg("bf1") + bad + msg("bf3") + b"BTS|3\rFTS|1\r"
    with hl7.client.MLLPClient("127.0.0.1", listener.port) as client:
        answer = client.send_message(batch)
        answer = answer.decode() if isinstance(answer, bytes) else answer
        assert ack_code(client.send_message(msg("bf4"))) == "AA"  # the connection goes on
    lines = answer.strip("\x0b\x1c\r").split("\r")  # (the hl7 client leaves the MLLP framing on)
    assert lines[0].startswith("BHS|^~\\&|DIGITALFRONT|") and lines[-1] == "BTS|3"
    assert [line.split("|")[1:3] for line in lines if line.startswith("MSA|")] == \
        [["AA", "bf1"], ["AE", "bf2"], ["AA", "bf3"]]
    assert {k: v for k, v in listener.store.counts().items() if v} == {"processed": 3, "error": 1}


def test_every_ig_sample_over_mllp(listener):
    # hl7.client reads exactly one frame per message, so the samples are sent in original mode
    # (MSH-15/16 cleared); enhanced mode has its own test above.
    codes = []
    with hl7.client.MLLPClient("127.0.0.1", listener.port) as client:
        for text in ig_messages().values():
            msh, rest = text.split("\r", 1)
            fields = msh.split("|")
            fields[14:16] = ["", ""] if len(fields) > 15 else fields[14:16]
            ack = client.send_message(("|".join(fields) + "\r" + rest).encode())
            codes.append(ack_code(ack if isinstance(ack, bytes) else ack.encode()))
    assert codes == ["AA"] * len(codes)
    counts = listener.store.counts()
    assert counts["processed"] == len(ig_messages()) and counts["error"] == 0


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_mllp_over_tls(tmp_path):
    cert, key = _self_signed(tmp_path)
    store = MessageStore(make_engine(f"sqlite:///{tmp_path}/tls.db"))
    handle = start_pipeline_listener(Hl7Pipeline(store, RecordingWriter()), "127.0.0.1", 0,
                                     ssl_context=tls_context(cert, key))
    try:
        client_ctx = ssl.create_default_context(cafile=cert)
        with MllpClient("localhost", handle.port, ssl_context=client_ctx) as c:
            assert ack_code(c.send(msg("tls"))[0]) == "AA"
        with socket.create_connection(("127.0.0.1", handle.port)) as s:  # plaintext peer is refused
            s.sendall(frame(msg("plain")))
            s.settimeout(5)
            try:
                assert FS not in s.recv(100)
            except (ConnectionError, TimeoutError):
                pass
    finally:
        handle.stop()
    assert store.counts()["processed"] == 1


def test_hl7_send_keeps_each_files_charset_and_reports_files_without_messages(listener, tmp_path):
    """``digitalfront hl7 send``: an ISO 8859-2 batch goes out byte for byte (MSH-18 must still describe what
    the receiver gets), the receiver decodes it by MSH-18, and a file holding no message fails the run."""
    from click.testing import CliRunner

    from interfaces.cli import hl7

    polish = (msg("pl1").decode().replace("|P|2.5.1\r", "|P|2.5.1|||||POL|8859/2\r")
              .replace("Doe^Jane", "Łukaszewicz^Żaneta"))
    raw = polish.encode("iso8859-2")
    (tmp_path / "a_batch.hl7").write_bytes(b"FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + raw + b"BTS|1\rFTS|1\r")
    (tmp_path / "b_notes.txt").write_text("not an HL7 message\n")
    out = CliRunner().invoke(hl7, ["send", str(tmp_path / "a_batch.hl7"), str(tmp_path / "b_notes.txt"),
                                   "--port", str(listener.port)], catch_exceptions=False)
    assert out.exit_code == 1 and "AA=1" in out.output and "no-message=1" in out.output, out.output
    assert "b_notes.txt: no HL7v2 message in it" in out.output
    (stored,) = listener.store.search()
    assert stored.raw == raw  # not transcoded to UTF-8
    (bundle,) = listener.writer.bundles
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["name"][0]["family"] == "Łukaszewicz" and patient["name"][0]["given"] == ["Żaneta"]


def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_monitor_port_serves_the_listeners_metrics_and_health(listener, tmp_path):
    from interfaces.monitor import MonitorServer

    monitor = MonitorServer(listener)
    base = f"http://127.0.0.1:{monitor.port}"
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
            s.sendall(b"noise" + frame(msg("mon1")) + frame(msg("mon2")) + frame(b"junk"))
            acks: list[bytes] = []
            buf = b""
            while len(acks) < 3:
                buf += s.recv(65536)
                while FS + b"\r" in buf:
                    one, buf = buf.split(FS + b"\r", 1)
                    acks.append(one.lstrip(VT))
        assert [ack_code(a) for a in acks] == ["AA", "AA", "AR"]
        status, text = _get(base + "/metrics")
        assert status == 200
        lines = set(text.splitlines())
        assert {'digitalfront_mllp_messages_total{ack="AA"} 2', 'digitalfront_mllp_messages_total{ack="AR"} 1',
                "digitalfront_mllp_connections_total 1", "digitalfront_mllp_discarded_bytes_total 5",
                'digitalfront_hl7v2_messages{status="processed"} 2',
                'digitalfront_hl7v2_messages{status="rejected"} 1', "digitalfront_hl7v2_applied_total 2"} <= lines, text
        assert _get(base + "/healthz")[0] == 200 and _get(base + "/readyz")[0] == 200
        assert _get(base + "/nothing")[0] == 404
        # the database stops answering (its file replaced by a directory): not ready, still alive
        listener.store.engine.dispose()
        (tmp_path / "hl7.db").unlink()
        (tmp_path / "hl7.db").mkdir()
        status, text = _get(base + "/readyz")
        assert status == 503 and "message store" in text and _get(base + "/healthz")[0] == 200
        listener.stop()
        assert _get(base + "/healthz")[0] == 503
    finally:
        monitor.stop()


def test_hl7_send_to_a_closed_port_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from interfaces.cli import hl7

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "m.hl7").write_bytes(msg("closed"))
    out = CliRunner().invoke(hl7, ["send", str(tmp_path / "m.hl7"), "--port", str(port)])
    assert out.exit_code == 1 and "Traceback" not in out.output, out.output
    assert f"MLLP 127.0.0.1:{port}: Connection refused (answered before: nothing)" in out.output, out.output


def test_mllp_command_on_a_taken_port_is_a_clear_error(listener, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from interfaces.cli import mllp

    monkeypatch.setenv("DIGITALFRONT_DATABASE_URL", f"sqlite:///{tmp_path}/taken.db")
    monkeypatch.setenv("DIGITALFRONT_AUTH", "off")
    out = CliRunner().invoke(mllp, ["--port", str(listener.port)])
    assert out.exit_code == 1 and "Traceback" not in out.output, out.output
    assert f"cannot listen for MLLP on 127.0.0.1:{listener.port}:" in out.output
    assert "address already in use" in out.output.lower()
