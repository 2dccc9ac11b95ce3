"""kill -9 of the server during a burst loses no acknowledged message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from interfaces.client import MllpClient, ack_code

REPO = Path(__file__).resolve().parents[3]
SERVER = textwrap.dedent("""
    import sys
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from interfaces.mllp import start_listener_thread
    services = build_services(Settings(database_url=sys.argv[1], auth=False))
    handle = start_listener_thread(services, "127.0.0.1", 0)
    print(handle.port, flush=True)
    handle.wait()
""")
ORU = ("MSH|^~\\&|LAB|HOSP|DF|DF|20240101120000||ORU^R01^ORU_R01|k{i}|P|2.5.1\r"
       "PID|1||{mrn}^^^HOSP&1.2.3&ISO^MR||Doe^Jane||19800101|F\r"
       "OBR|1|P{i}^LAB|F{i}^LAB|24323-8^Panel^LN|||20240101110000||||||||||||||||F\r"
       + "".join(f"OBX|{n}|NM|2345-{n}^Analyte {n}^LN||{90 + n}|mg/dL^mg/dL^UCUM|70-99|N|||F\r" for n in range(1, 11)))


def test_kill_9_during_burst_loses_no_acknowledged_message(tmp_path):
    db = f"sqlite:///{tmp_path}/kill9.db"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, db], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "DIGITALFRONT_HL7_WORKERS": "2"})
    try:
        port = int(proc.stdout.readline())
        acked: list[str] = []
        with MllpClient("127.0.0.1", port, timeout=30) as c:
            for i in range(200):
                try:
                    ack = c.send(ORU.format(i=i, mrn=100 + i % 7).encode())[0]
                except (ConnectionError, OSError):
                    break
                assert ack_code(ack) == "AA"
                acked.append(f"k{i}")
                if len(acked) == 1:  # kill from another thread while the burst is in full flow
                    threading.Timer(1.0, os.kill, (proc.pid, signal.SIGKILL)).start()
    finally:
        proc.kill()
        proc.wait(10)
    assert 2 <= len(acked) < 200
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from interfaces.service import pipeline_for

    services = build_services(Settings(database_url=db, auth=False))
    store = pipeline_for(services).store
    for cid in acked:
        stored = store.find_original("LAB", "HOSP", cid)
        assert stored is not None and stored.status == "processed", cid
        report = services.client.search("DiagnosticReport", {"identifier": f"F{cid[1:]}"})
        assert len(report) == 1 and len(report[0]["result"]) == 10, cid
    # Whatever was stored but not finished is replayable and then applied exactly once.
    pipeline = pipeline_for(services)
    for msg_id in list(store.iter_ids(status="received")):
        assert pipeline.replay(msg_id).ack_code == "AA"
    assert store.counts()["received"] == 0


def test_kill_9_during_group_commits_from_several_connections(tmp_path):
    """Four senders at once (so messages share group commits): every AA'd message is applied, every
    message the server stored but did not finish is in ``received`` and replays to AA."""
    db = f"sqlite:///{tmp_path}/kill9g.db"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, db], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "DIGITALFRONT_HL7_WORKERS": "2"})
    acked: list[str] = []
    lock = threading.Lock()

    def sender(k: int) -> None:
        try:
            with MllpClient("127.0.0.1", port, timeout=30) as c:
                for i in range(k * 1000, k * 1000 + 100):
                    ack = c.send(ORU.format(i=i, mrn=100 + k).encode())[0]
                    assert ack_code(ack) == "AA"
                    with lock:
                        acked.append(f"k{i}")
                        if len(acked) == 4:  # the burst flows (however slow the start): kill it in full flow
                            threading.Timer(1.0, os.kill, (proc.pid, signal.SIGKILL)).start()
        except (ConnectionError, OSError):
            return

    try:
        port = int(proc.stdout.readline())
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        proc.kill()
        proc.wait(10)
    assert 4 <= len(acked) < 400
    from digitalfront.app import build_services
    from digitalfront.config import Settings
    from interfaces.service import pipeline_for

    services = build_services(Settings(database_url=db, auth=False))
    pipeline = pipeline_for(services)
    store = pipeline.store
    for cid in acked:
        stored = store.find_original("LAB", "HOSP", cid)
        assert stored is not None and stored.status == "processed", cid
    assert store.counts()["error"] == 0
    for msg_id in list(store.iter_ids(status="received")):
        assert pipeline.replay(msg_id).ack_code == "AA"
    processed = store.search(status="processed", limit=1000)
    for m in processed:  # applied exactly once: one report with its 10 results per message
        report = services.client.search("DiagnosticReport", {"identifier": f"F{m.control_id[1:]}"})
        assert len(report) == 1 and len(report[0]["result"]) == 10, m.control_id
