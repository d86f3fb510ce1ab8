"""asyncio or gevent: which holds thousands of provider calls in flight in one process?

    .venv/bin/python -m tests.bench.concurrency [--calls N] [--in-flight C ...] [--latency-ms L]

A loopback HTTP server (its own process, asyncio) answers every POST after ``L`` ms with
a 1 KB body shaped like a chat completion. Each client runs in a fresh process and makes
``N`` calls with ``C`` in flight, through one ``httpx`` client whose pool allows ``C``
connections:

- ``asyncio``: an ``AsyncClient``, ``C`` coroutines (what the worker's event loop does);
- ``gevent``:  a ``Client`` after ``gevent.monkey.patch_all()``, a pool of ``C`` greenlets;

each with ``httpx2`` (pydantic's maintained fork, the HTTP stack of the openai and anthropic
SDKs) and with ``httpx`` (whose connection pool assigns queued requests in quadratic time:
encode/httpcore#1035, fixed in httpx2 by pydantic/httpx2#974 and #1075).

Reported per client and ``C``: calls/s, the share of the latency bound (``C / L``), client
CPU per 1,000 calls and peak RSS. Figures go to ``var/bench-concurrency.json``. gevent is
a bench-only extra (``pip install -e '.[bench]'``); without it the gevent rows are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BODY = json.dumps(
    {
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "model": "gpt-4.1-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "An answer. " * 70},
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 150, "total_tokens": 170},
    }
).encode()


async def serve(port: int, latency: float) -> None:
    """A minimal keep-alive HTTP/1.1 server: read a request, wait, answer."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                await asyncio.sleep(latency)
                writer.write(head + BODY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=8192)
    async with server:
        await server.serve_forever()


def client_asyncio(url: str, calls: int, in_flight: int, library: str = "httpx") -> dict[str, Any]:
    httpx: Any = __import__(library)

    async def run() -> int:
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        errors = 0
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            semaphore = asyncio.Semaphore(in_flight)

            async def one(i: int) -> None:
                nonlocal errors
                async with semaphore:
                    response = await client.post(url, json={"n": i})
                    if response.status_code != 200 or not response.json()["choices"]:
                        errors += 1

            await asyncio.gather(*(one(i) for i in range(calls)))
        return errors

    return measure(lambda: asyncio.run(run()))


def client_aiohttp(
    url: str, calls: int, in_flight: int, library: str = "aiohttp"
) -> dict[str, Any]:
    import aiohttp

    async def run() -> int:
        errors = 0
        connector = aiohttp.TCPConnector(limit=in_flight)
        async with aiohttp.ClientSession(connector=connector) as session:
            semaphore = asyncio.Semaphore(in_flight)

            async def one(i: int) -> None:
                nonlocal errors
                async with semaphore, session.post(url, json={"n": i}) as response:
                    body = await response.json()
                    if response.status != 200 or not body["choices"]:
                        errors += 1

            await asyncio.gather(*(one(i) for i in range(calls)))
        return errors

    return measure(lambda: asyncio.run(run()))


def client_openai(url: str, calls: int, in_flight: int, library: str) -> dict[str, Any]:
    """The OpenAI SDK's async client, on its default transport or on aiohttp."""
    import openai

    base_url = url.removesuffix("/chat/completions")

    async def run() -> int:
        errors = 0
        http_client: Any = None
        if library == "openai-aiohttp":
            http_client = openai.DefaultAioHttpClient(
                limits=openai.DEFAULT_CONNECTION_LIMITS.__class__(
                    max_connections=in_flight, max_keepalive_connections=in_flight
                )
            )
        client = openai.AsyncOpenAI(
            api_key="sk-loopback", base_url=base_url, max_retries=0, http_client=http_client
        )
        semaphore = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            nonlocal errors
            async with semaphore:
                completion = await client.chat.completions.create(
                    model="gpt-4.1-mini", messages=[{"role": "user", "content": str(i)}]
                )
                if not completion.choices:
                    errors += 1

        await asyncio.gather(*(one(i) for i in range(calls)))
        await client.close()
        return errors

    return measure(lambda: asyncio.run(run()))


def client_gevent(url: str, calls: int, in_flight: int, library: str = "httpx") -> dict[str, Any]:
    from gevent import monkey

    monkey.patch_all()
    import gevent.pool

    httpx: Any = __import__(library)

    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)

    def run() -> int:
        errors = 0
        with httpx.Client(limits=limits, timeout=60) as client:

            def one(i: int) -> None:
                nonlocal errors
                response = client.post(url, json={"n": i})
                if response.status_code != 200 or not response.json()["choices"]:
                    errors += 1

            gevent.pool.Pool(in_flight).map(one, range(calls))
        return errors

    return measure(run)


def measure(run: Any) -> dict[str, Any]:
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    errors = run()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss_mb, "errors": errors}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.concurrency")
    # Small defaults: httpx's slowest row makes ~50 calls/s at 1,000 in flight.
    parser.add_argument("--calls", type=int, default=4_000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1000])
    parser.add_argument("--latency-ms", type=float, default=500.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--library",
        nargs="+",
        default=["aiohttp", "openai-aiohttp", "openai", "httpx2", "httpx"],
        help="aiohttp; the OpenAI SDK on aiohttp (openai-aiohttp) and on its default "
        "transport (openai); httpx2 (the SDKs' own httpx); httpx",
    )
    parser.add_argument("--client", choices=("asyncio", "gevent"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.serve, args.latency_ms / 1000))
        return 0
    if args.client:
        run = client_gevent if args.client == "gevent" else client_asyncio
        if args.library[0] == "aiohttp":
            run = client_aiohttp
        elif args.library[0].startswith("openai"):
            run = client_openai
        print(json.dumps(run(args.url, args.calls, args.in_flight[0], args.library[0])))
        return 0

    port = free_port()
    me = [sys.executable, "-m", "tests.bench.concurrency"]
    server = subprocess.Popen([*me, "--serve", str(port), "--latency-ms", str(args.latency_ms)])
    time.sleep(1.0)
    try:
        clients = ["asyncio"]
        try:
            import gevent  # noqa: F401

            clients.append("gevent")
        except ImportError:
            print("gevent is not installed (pip install -e '.[bench]'): its rows are skipped")
        rows = []
        for in_flight in args.in_flight:
            pairs = [
                (c, lib)
                for lib in args.library
                for c in clients
                # aiohttp and the SDK's async client are asyncio only
                if not (c == "gevent" and (lib == "aiohttp" or lib.startswith("openai")))
            ]
            for client, library in pairs:
                runs = []
                for _ in range(args.repeat):
                    out = subprocess.run(
                        [
                            *me,
                            "--client",
                            client,
                            "--url",
                            f"http://127.0.0.1:{port}/v1/chat/completions",
                            "--calls",
                            str(args.calls),
                            "--in-flight",
                            str(in_flight),
                            "--library",
                            library,
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        cwd=ROOT,
                    )
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                runs.sort(key=lambda r: r["wall_s"])
                median = runs[len(runs) // 2]
                rate = args.calls / median["wall_s"]
                bound = in_flight / (args.latency_ms / 1000)
                rows.append(
                    {
                        "client": client,
                        "library": library,
                        "in_flight": in_flight,
                        "calls_per_s": round(rate, 1),
                        "share_of_bound": round(rate / bound, 3),
                        "cpu_ms_per_1000_calls": round(
                            1000 * median["cpu_s"] / args.calls * 1000, 1
                        ),
                        "peak_rss_mb": round(median["peak_rss_mb"], 1),
                        "errors": median["errors"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
        server.wait(10)
    out_path = ROOT / "var" / "bench-concurrency.json"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text(json.dumps({"latency_ms": args.latency_ms, "rows": rows}, indent=2) + "\n")
    print(f"figures written to {out_path}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
