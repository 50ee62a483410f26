"""Load test of ``recforge serve``: the two-tower model with an IVF index on ML-100K, several
uvicorn workers, a fixed open-loop request rate, with the SQLite and the Redis feature store.

uvicorn's C-accelerated HTTP parser and loop (``uvicorn[standard]``: httptools, uvloop) cut
the server's CPU per request from about 5.4 ms to 2.0 ms here; the report says which were
installed.

The model is trained once with ``recforge train --dataset ml-100k --model two-tower`` into
``--registry/tt`` (kept for later runs). For each backend the service is started as a
separate process (``recforge serve --workers 2`` on 127.0.0.1, IVF-Flat index with
``nlist=32, nprobe=8``), warmed up, then driven by an asyncio client (httpx) that sends
request ``i`` at ``t0 + i / rate`` whatever the answers so far (open loop: a slow answer
never delays the next request, so queueing shows in the latency, no coordinated omission).
Latency is measured from the scheduled send time to the end of the answer. The client
speaks HTTP/1.1 over asyncio streams with keep-alive connections (`_Pool`), about a tenth
of httpx's CPU per request, so that it does not starve the service on 2 cores. The mix: 90%
``POST /recommend`` for a random ML-100K user (seeded), 10% ``POST /events`` clicks (so the
fresh-history path runs: a user with recent events is encoded with them). At most
``--max-in-flight`` requests are outstanding; a request that would exceed it counts as an
error. Reported: p50, p99, max and errors, overall and per route; the bar is p99 < 50 ms
with no errors.

    python benchmarks/serve_load.py --backend sqlite redis --rate 200 --duration 60 \
        --json benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

TOKEN = "load-test-token-" + "0" * 16
ROOT = Path(__file__).resolve().parents[1]


def recforge(*args: str, **kwargs: Any) -> subprocess.Popen:
    """``recforge ARGS`` as a child process (the same interpreter)."""
    code = "import sys; from recforge.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *args], **kwargs)


def ensure_model(registry: Path) -> Path:
    """The two-tower version folder ``registry/tt``, trained by ``recforge train`` if absent."""
    folder = registry / "tt"
    if not (folder / "model.json").is_file():
        print(f"training the two-tower model into {folder} ...", flush=True)
        code = recforge("train", "--dataset", "ml-100k", "--model", "two-tower",
                        "--out", str(folder)).wait()
        if code:
            raise SystemExit(f"recforge train failed ({code})")
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(state: Path, store: str | None, nlist: int, nprobe: int) -> Path:
    lines = ["[serve]", f'state_dir = "{state}"', 'dataset = "ml-100k"', 'index = "ivf-flat"',
             f"index_settings = {{ nlist = {nlist}, nprobe = {nprobe} }}"]
    if store:
        lines.append(f'store = "{store}"')
    path = state.parent / "serve.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_ready(url: str, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        ready = 0
        while time.monotonic() < deadline:
            try:
                if (await client.get(url + "/ready", timeout=2)).status_code == 200:
                    ready += 1
                    if ready >= 10:  # answered repeatedly: every worker is up
                        return
            except httpx.HTTPError:
                ready = 0
            await asyncio.sleep(0.2)
    raise SystemExit(f"the service at {url} was not ready within {timeout:.0f} s")


def make_requests(n: int, users: list[str], items: list[str], seed: int,
                  event_share: float) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = rng.choice(users)
        if rng.random() < event_share:
            out.append(("/events", {"event_id": f"load-{seed}-{i}-{uuid.uuid4().hex[:8]}",
                                    "user_id": user, "item_id": rng.choice(items),
                                    "event": "click"}))
        else:
            out.append(("/recommend", {"user_id": user, "k": 10}))
    return out


class _Pool:
    """Keep-alive HTTP/1.1 connections to 127.0.0.1 on plain asyncio streams: a lean client
    (a few tens of microseconds per request), so the load generator is not the bottleneck
    on a small machine (httpx's async client cost about 2 ms of CPU per request here)."""

    def __init__(self, port: int, size: int):
        self.port, self.size, self.opened = port, size, 0
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, route: str, body: bytes, timeout: float) -> int:
        """The answer's status (0: the bound, a transport error or the timeout). A reused
        connection the server closed while idle is replaced once, as HTTP clients do."""
        for reused in (bool(self.idle), False):
            conn = self.idle.pop() if reused else await self._open()
            if conn is None:
                return 0
            try:
                status = await asyncio.wait_for(self._exchange(conn, route, body), timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
                    IndexError) as exc:
                conn[1].close()
                self.opened -= 1
                if reused and isinstance(exc, IndexError):  # closed while idle: no answer
                    continue
                return 0
            self.idle.append(conn)
            return status
        return 0

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        if self.opened >= self.size:
            return None  # the in-flight bound
        self.opened += 1
        try:
            return await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.opened -= 1
            return None

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                        route: str, body: bytes) -> int:
        reader, writer = conn
        writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                     b"\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s"
                     % (route.encode(), TOKEN.encode(), len(body), body))
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def drive(url: str, requests: list[tuple[str, dict[str, Any]]], rate: float,
                max_in_flight: int) -> list[tuple[str, float, int]]:
    """Send ``requests`` open-loop at ``rate`` per second; (route, seconds, status) each
    (status 0: a transport error, a 10 s timeout or the in-flight bound)."""
    pool = _Pool(int(url.rsplit(":", 1)[1]), max_in_flight)
    bodies = [(route, json.dumps(body).encode()) for route, body in requests]
    results: list[tuple[str, float, int]] = []

    async def one(route: str, body: bytes, due: float) -> None:
        status = await pool.post(route, body, 10.0)
        results.append((route, time.perf_counter() - due, status))

    tasks = []
    start = time.perf_counter() + 0.05
    for i, (route, body) in enumerate(bodies):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(route, body, due)))
    await asyncio.gather(*tasks)
    pool.close()
    return results


def summarise(results: list[tuple[str, float, int]]) -> dict[str, Any]:
    def stats(rows: list[tuple[str, float, int]]) -> dict[str, Any]:
        ok = np.array([s for _, s, code in rows if code == 200]) * 1000
        errors = sum(1 for _, _, code in rows if code != 200)
        if not len(ok):
            return {"requests": len(rows), "errors": errors}
        return {"requests": len(rows), "errors": errors,
                "p50_ms": round(float(np.percentile(ok, 50)), 2),
                "p99_ms": round(float(np.percentile(ok, 99)), 2),
                "max_ms": round(float(ok.max()), 2)}

    out = {"all": stats(results)}
    for route in sorted({r for r, _, _ in results}):
        out[route] = stats([row for row in results if row[0] == route])
    return out


def run_backend(backend: str, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"recforge-load-{backend}-"))
    store = None
    if backend == "redis":
        url = os.environ.get("RECFORGE_REDIS_URL", "redis://127.0.0.1:6379/15")
        store = f"{url}{'&' if '?' in url else '?'}prefix=load-{uuid.uuid4().hex[:8]}:"
    config = write_config(work / "state", store, args.nlist, args.nprobe)
    registry = work / "registry"
    registry.mkdir()
    (registry / "tt").symlink_to(model)
    port = free_port()
    env = os.environ | {"RECFORGE_API_TOKEN": TOKEN}
    server = recforge("serve", "--model", str(registry), "--port", str(port), "--workers",
                      str(args.workers), "--config", str(config), env=env,
                      start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_ready(url, args.startup_timeout))
        from recforge.data.loading import load_dataset

        data = load_dataset("ml-100k")
        users = [str(u) for u in data.user_map.ids]
        items = [str(i) for i in data.item_map.ids]
        warm = make_requests(args.warmup, users, items, args.seed + 1, args.event_share)
        asyncio.run(drive(url, warm, args.rate, args.max_in_flight))
        load = make_requests(int(args.rate * args.duration), users, items, args.seed,
                             args.event_share)
        loadavg = os.getloadavg()
        started = time.perf_counter()
        results = asyncio.run(drive(url, load, args.rate, args.max_in_flight))
        elapsed = time.perf_counter() - started
        summary = summarise(results)
        summary["achieved_rate"] = round(len(results) / elapsed, 1)
        summary["loadavg_before"] = [round(x, 2) for x in loadavg]
        summary["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        return summary
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def uvicorn_implementation() -> dict[str, str]:
    """The HTTP parser and event loop uvicorn picks here ("auto": httptools and uvloop when
    installed, as with ``uvicorn[standard]``; else h11 and asyncio)."""
    import importlib.util

    def has(name: str) -> bool:
        return importlib.util.find_spec(name) is not None

    return {"http": "httptools" if has("httptools") else "h11",
            "loop": "uvloop" if has("uvloop") else "asyncio"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, default=ROOT / "runs" / "serve-load",
                        help="where the trained model is kept (default runs/serve-load)")
    parser.add_argument("--backend", nargs="+", choices=("sqlite", "redis"),
                        default=["sqlite", "redis"])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--warmup", type=int, default=400, help="requests before measuring")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nlist", type=int, default=32)
    parser.add_argument("--nprobe", type=int, default=8)
    parser.add_argument("--event-share", type=float, default=0.1)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--startup-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or not 0 <= args.event_share <= 1:
        parser.error("--rate and --duration must be > 0, --event-share in [0, 1]")
    model = ensure_model(args.registry).resolve()
    report: dict[str, Any] = {"rate": args.rate, "duration_s": args.duration,
                              "workers": args.workers, "index": "ivf-flat",
                              "nlist": args.nlist, "nprobe": args.nprobe,
                              "event_share": args.event_share,
                              "uvicorn": uvicorn_implementation(), "backends": {}}
    for backend in args.backend:
        print(f"{backend}: {args.rate:g} req/s for {args.duration:g} s ...", flush=True)
        report["backends"][backend] = summary = run_backend(backend, model, args)
        print(json.dumps(summary, indent=2), flush=True)
        p99 = summary["all"].get("p99_ms", float("inf"))
        verdict = "met" if p99 < 50 and summary["all"]["errors"] == 0 else "NOT met"
        print(f"{backend}: p99 {p99} ms, {summary['all']['errors']} errors: bar {verdict}",
              flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
