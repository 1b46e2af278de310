"""Throughput benchmark of the ML API: one uvicorn worker on loopback, batches of 1000."""

import argparse
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from devstack.ml_api_server import MlApiServer


def make_batch(size: int) -> bytes:
    """Build one JSON batch of realistic transactions."""
    items = [
        {
            "id": str(uuid.uuid4()),
            "description": f"CARD PAYMENT TO CORNER SHOP LTD REF {i:08d}",
            "amount": f"{(i % 5000) / 100:.2f}" if i % 2 else (i % 5000) / 100,
            "timestamp": "2024-05-01T12:34:56.123456+00:00",
            "merchant": None if i % 3 == 0 else "Corner Shop Ltd",
            "operation_type": "card_payment",
            "side": "debit",
        }
        for i in range(size)
    ]
    return orjson.dumps(items)


def post_batches(url: str, body: bytes, count: int) -> None:
    """Post ``body`` ``count`` times on one keep-alive connection."""
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            response = client.post(url, content=body, headers=headers)
            response.raise_for_status()


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU time used so far by a Linux process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(batches: int, batch_size: int, concurrency: int, access_log: bool) -> tuple[float, float]:
    """Run the benchmark; return wall-clock and server-CPU transactions per second."""
    server = MlApiServer(
        Path(tempfile.mkdtemp()) / "ml_api.log",
        access_log=access_log,
        env={"ML_API_FAIL_FIRST_N": "0"},
    ).start()
    pid = server.pid or 0
    try:
        url = f"{server.url}/predict"
        body = make_batch(batch_size)
        post_batches(url, body, 20)  # warm-up
        per_client = batches // concurrency
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for future in [
                pool.submit(post_batches, url, body, per_client) for _ in range(concurrency)
            ]:
                future.result()
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(pid) - cpu_before
    finally:
        server.stop()
    sent = per_client * concurrency * batch_size
    return sent / elapsed, sent / server_cpu


def main() -> None:
    """Parse arguments, run, print transactions/s."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1, help="client threads")
    parser.add_argument("--access-log", action="store_true", help="keep uvicorn's access log")
    args = parser.parse_args()
    wall, per_cpu = run(args.batches, args.batch_size, args.concurrency, args.access_log)
    print(
        f"{wall:,.0f} transactions/s wall clock ({args.batches} batches of {args.batch_size}, "
        f"{args.concurrency} client thread(s), 1 uvicorn worker)"
    )
    print(f"{per_cpu:,.0f} transactions per server CPU-second (one core's capacity)")


if __name__ == "__main__":
    main()
