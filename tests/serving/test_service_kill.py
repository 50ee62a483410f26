"""Fault: ``recforge serve`` killed with SIGKILL while 10,000 events stream in through
``POST /events``. After a restart (which replays the log into the store) and a resend of
every batch, each event is in the event log and in the feature store exactly once, and a
batch acknowledged before the kill is recognised as duplicates when sent again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from test_app_support import TOKEN, auth, registry_dir, synthetic_data

from recforge.serving.events import EventLog
from recforge.serving.store import open_store

N_EVENTS, BATCH = 10_000, 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(config: Path, port: int) -> subprocess.Popen[bytes]:
    """``recforge serve`` (one worker) on 127.0.0.1:``port``, once ``/ready`` answers."""
    env = {**os.environ, "RECFORGE_API_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from recforge.cli import main; sys.exit(main())",
         "serve", "--model", str(registry_dir()), "--config", str(config), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("recforge serve did not become ready within 90 s")


def _events() -> list[dict[str, Any]]:
    data = synthetic_data()
    users = [str(u) for u in data.user_map.ids]
    items = [str(i) for i in data.item_map.ids]
    return [{"event_id": f"e{i}", "user_id": users[i % len(users)],
             "item_id": items[(7 * i) % len(items)], "event": "click",
             "timestamp": 1.7e9 + i} for i in range(N_EVENTS)]


def _send(url: str, batches: list[list[dict[str, Any]]], acked: dict[int, int],
          stop: threading.Event) -> None:
    """Posts the batches in order, recording ``accepted`` of each acknowledged one, until a
    request fails (the server is gone)."""
    with httpx.Client(timeout=10, headers=auth()) as client:
        for number, batch in enumerate(batches):
            if stop.is_set():
                return
            try:
                answer = client.post(url, json=batch)
            except httpx.HTTPError:
                return
            if answer.status_code != 200:
                return
            acked[number] = answer.json()["accepted"]


def test_kill_9_of_the_service_while_events_stream_in(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "serve.toml"
    config.write_text(f'[serve]\nstate_dir = "{state.as_posix()}"\nindex = "ivf-flat"\n'
                      "index_settings = { nlist = 4, nprobe = 2 }\n", encoding="utf-8")
    events = _events()
    batches = [events[i:i + BATCH] for i in range(0, N_EVENTS, BATCH)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}/events"

    server = _start(config, port)
    acked: dict[int, int] = {}
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(url, batches, acked, stop))
    sender.start()
    deadline = time.monotonic() + 60
    while len(acked) < 40 and sender.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(server.pid, signal.SIGKILL)  # while the sender is mid-stream
    server.wait(timeout=10)
    stop.set()
    sender.join(timeout=30)
    before_kill = dict(acked)
    assert 40 <= len(before_kill) < len(batches), "the kill did not land mid-stream"
    assert all(accepted == BATCH for accepted in before_kill.values())

    server = _start(config, port)
    try:
        with httpx.Client(timeout=10, headers=auth()) as client:
            again = [client.post(url, json=batch).json() for batch in batches]
    finally:
        server.terminate()
        server.wait(timeout=20)

    for number in before_kill:  # acknowledged before the kill: all duplicates now
        assert again[number] == {"accepted": 0, "duplicates": BATCH}
    store = open_store(f"sqlite:///{state / 'features.db'}")
    log = EventLog(state / "events.db")
    try:
        assert len(log) == N_EVENTS
        assert sorted(event.event_id for event in log) == sorted(e["event_id"] for e in events)
        assert store.applied_count() == N_EVENTS
        snapshot = store.snapshot()
        clicks = sum(user["counts"].get("click", 0) for user in snapshot["users"].values())
        assert clicks == N_EVENTS
    finally:
        store.close()
        log.close()
