"""`make bench`: each stage alone, then the pipelines end to end, in one run, one table.

1. Stages alone on the generated 1M-row file (bench_stages): CSV parse, plan, validation,
   ML API, COPY upsert, "already stored" look-ups.
2. Batch end to end (`python -m pipeline batch`) on 100k and 1M rows (and 10M with --big),
   each into a fresh database: rows/s and peak RSS.
3. Stream end to end: one consumer on preloaded events (and 2, 3 consumers with
   --consumers), latency at 2,000 and 20,000 events/s.

Prints the table (each stage's ceiling, the end-to-end figure, their ratio) and draws the
charts under bench/out/: rows/s and peak RSS against rows, the stream latency CDFs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import polars as pl
from bench_batch import BatchResult, run_file
from bench_stages import Stage, csv_stages, ml_stage, store_stages
from bench_stream import Services, latency, sustained
from common import MlApi, generated_file, load_average, print_table

from devstack.kafka_broker import KafkaBroker
from pipeline.adapters.postgres import embedded as embedded_pg

OUT = Path(__file__).resolve().parent / "out"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the 10M-row batch (minutes)")
    parser.add_argument("--events", type=int, default=300_000, help="stream: preloaded events")
    parser.add_argument("--consumers", default="1", help="stream: consumer counts, e.g. 1,2,3")
    parser.add_argument("--latency-seconds", type=float, default=30)
    parser.add_argument("--skip-stream", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sizes = [100_000, 1_000_000] + ([10_000_000] if args.big else [])
    files = {rows: generated_file(rows) for rows in sizes}
    events = None if args.skip_stream else generated_file(args.events)
    print(f"load average before: {load_average()}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-all-"))
    api = MlApi(tmp / "ml_api.log")
    server = broker = None
    stages: list[Stage] = []
    batches: list[BatchResult] = []
    stream_rows: list[list[object]] = []
    cdfs: dict[str, list[float]] = {}
    try:
        server = embedded_pg.start(tmp / "pg")
        api.start()
        for size in sizes:
            print(f"batch end to end, {size:,} rows …")
            batches.append(run_file(f"{size:,}", files[size], server, api, None))
        if events is not None:
            broker = KafkaBroker(tmp / "kafka", log_file=tmp / "kafka.log")
            services = Services(broker.start(timeout=180), server, api, broker.pid)
            for count in (int(c) for c in args.consumers.split(",")):
                stream_rows += sustained(services, events, args.events, 6, count)[1:]
            for rate in (2_000, 20_000):
                found_rows, _, samples = latency(services, rate, args.latency_seconds, 6)
                stream_rows += found_rows
                cdfs[f"{rate:,}/s"] = samples
        # The stages last: they hold a million rows in this process, and a child process
        # started after that would inherit its peak RSS figure (ru_maxrss survives exec).
        print("stages alone, on the 1M-row file …")
        found, valid = csv_stages(files[1_000_000])
        stages += found
        ml, categorised = ml_stage(api, valid, 200_000)
        stages.append(ml)
        rows = pl.concat(valid).head(1_000_000)
        answer = pl.concat(categorised).select("id", "category", "model_version")
        rows = rows.join(answer.unique("id"), on="id", how="left").with_columns(
            category=pl.col("category").fill_null("Food"),
            model_version=pl.col("model_version").fill_null("bench"),
        )
        del valid, categorised
        stages += store_stages(server, rows)
        del rows
    finally:
        api.stop()
        if server is not None:
            server.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {load_average()}")
    report(stages, batches, stream_rows, cdfs)
    charts(batches, cdfs)
    ok = all(b.complete for b in batches) and all(r[-1] == "ok" for r in stream_rows)
    return 0 if ok else 1


def report(
    stages: list[Stage],
    batches: list[BatchResult],
    stream_rows: list[list[object]],
    cdfs: dict[str, list[float]],
) -> None:
    """The stage table, the end-to-end table, the ratios; also written as JSON."""
    print("\nstages alone (1M-row file; ML API on 200k rows)")
    print_table(
        ["stage", "rows", "seconds", "rows/s (ceiling)", "service CPU µs/row"],
        [[s.name, s.rows, s.seconds, s.rows_per_s, s.cpu_us_per_row or "-"] for s in stages],
    )
    pipeline_stages = [s for s in stages if not s.name.startswith(("look-up", "COPY upsert, id"))]
    slowest = min(pipeline_stages, key=lambda s: s.rows_per_s)
    print("\nend to end")
    headers = ["pipeline", "rows", "seconds", "rows/s", "peak RSS MB", "sampled MB",
               "CPU µs/row pipe", "CPU µs/row PG", "CPU µs/row ML", "÷ slowest stage"]  # fmt: skip
    table = []
    for b in batches:
        rate = b.rows / b.run.seconds
        table.append(
            [f"batch {b.label}", b.rows, b.run.seconds, rate, b.run.peak_rss_mb,
             b.run.sampled_rss_mb, b.run.cpu_s / b.rows * 1e6,
             b.service_cpu["postgres"] / b.rows * 1e6,
             b.service_cpu["ml_api"] / b.rows * 1e6, f"{rate / slowest.rows_per_s:.2f}"]
        )  # fmt: skip
    for row in stream_rows:
        count = int(row[1])  # type: ignore[call-overload]
        rate = float(row[3])  # type: ignore[arg-type]
        table.append(
            [f"stream {row[0]}", count, row[2], rate, row[6], "-", _per_row(row[7], count),
             _per_row(row[9], count), _per_row(row[8], count),
             f"{rate / slowest.rows_per_s:.2f}"]
        )  # fmt: skip
    print_table(headers, table)
    print(f"slowest stage alone: {slowest.name} at {slowest.rows_per_s:,.0f} rows/s")
    for row in stream_rows:
        if str(row[0]).startswith("(a)"):  # sustained: once running, i.e. after its first commit
            after, to_first = float(row[5]), float(row[4])  # type: ignore[arg-type]
            print(f"stream {row[0]}: {after:,.0f} events/s after the first commit "
                  f"({to_first:.1f} s to it)")  # fmt: skip
    for label, samples in cdfs.items():
        if samples:
            print(f"stream latency at {label}: p50 {_pct(samples, 0.5):.0f} ms, "
                  f"p99 {_pct(samples, 0.99):.0f} ms, max {samples[-1]:.0f} ms")  # fmt: skip
    result = {
        "stages": [{**s.__dict__, "rows_per_s": s.rows_per_s} for s in stages],
        "end_to_end": [dict(zip(headers, map(str, row), strict=True)) for row in table],
    }
    (OUT / "bench.json").write_text(json.dumps(result, indent=2))


def charts(batches: list[BatchResult], cdfs: dict[str, list[float]]) -> None:
    """rows/s and peak RSS against rows (batch); latency CDFs (stream)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if batches:
        rows = [b.rows for b in batches]
        for name, values, label in (
            ("batch_rows_per_s.png", [b.rows / b.run.seconds for b in batches], "rows/s"),
            ("batch_peak_rss.png", [b.run.peak_rss_mb for b in batches], "peak RSS (MB)"),
        ):
            figure, axes = plt.subplots(figsize=(6, 4))
            axes.plot(rows, values, marker="o")
            axes.set_xscale("log")
            axes.set_xlabel("rows in the file")
            axes.set_ylabel(label)
            axes.set_ylim(bottom=0)
            if "RSS" in label:
                axes.axhline(300, color="red", linestyle="--", label="300 MB target")
                axes.legend()
            axes.set_title(f"batch end to end: {label}")
            axes.grid(True, alpha=0.3)
            figure.tight_layout()
            figure.savefig(OUT / name, dpi=100)
            plt.close(figure)
    if cdfs:
        figure, axes = plt.subplots(figsize=(6, 4))
        for label, samples in cdfs.items():
            if samples:
                fractions = [(i + 1) / len(samples) for i in range(len(samples))]
                axes.plot(samples, fractions, label=label)
        axes.set_xscale("log")
        axes.set_xlabel("latency (ms): categorised_at - event time")
        axes.set_ylabel("share of events")
        axes.set_title("stream latency CDF, one consumer")
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(OUT / "stream_latency_cdf.png", dpi=100)
        plt.close(figure)
    print(f"charts in {OUT}")


def _per_row(cpu: object, rows: int) -> float | str:
    return float(cpu) / rows * 1e6 if isinstance(cpu, int | float) and rows else "-"


def _pct(samples: list[float], share: float) -> float:
    return samples[min(int(share * len(samples)), len(samples) - 1)]


if __name__ == "__main__":
    sys.exit(main())
