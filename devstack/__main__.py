"""`python -m devstack …`: the development services (not part of the product)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from devstack.stack import ROOT

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
kafka_app = typer.Typer(no_args_is_help=True, help="The local Kafka broker (KRaft, one node).")
postgres_app = typer.Typer(no_args_is_help=True, help="The embedded PostgreSQL of the stack.")
toxiproxy_app = typer.Typer(no_args_is_help=True, help="Toxiproxy, the fault proxy of make chaos.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(postgres_app, name="postgres")
app.add_typer(toxiproxy_app, name="toxiproxy")
KAFKA_STATE_DIR = ROOT / ".data" / "kafka"
POSTGRES_DIR = ROOT / ".data" / "postgres"


@kafka_app.command("up")
def kafka_up(
    port: Annotated[int, typer.Option(help="Loopback port (the default bootstrap's).")] = 9092,
) -> None:
    """Start the broker (jars from Maven Central); the last line is the bootstrap host:port."""
    from devstack import kafka_broker

    try:
        print(kafka_broker.up(KAFKA_STATE_DIR, port))
    except kafka_broker.BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker (data kept)."""
    from devstack import kafka_broker

    print("stopped" if kafka_broker.down(KAFKA_STATE_DIR) else "not running")


@postgres_app.command("up")
def postgres_up() -> None:
    """Start the embedded PostgreSQL under .data/postgres; prints its URL."""
    from pipeline.adapters.postgres import embedded

    print(embedded.up(POSTGRES_DIR))


@postgres_app.command("down")
def postgres_down() -> None:
    """Stop the embedded PostgreSQL (data kept)."""
    from pipeline.adapters.postgres import embedded

    print("stopped" if embedded.down(POSTGRES_DIR) else "not running")


@postgres_app.command("url")
def postgres_url(
    role: Annotated[
        str | None,
        typer.Option(help="txcat_owner, txcat_app or txcat_analyst: that role on database txcat."),
    ] = None,
) -> None:
    """Print the URL of the running embedded PostgreSQL (exit 1 when it is not running)."""
    from devstack import native_roles
    from pipeline.adapters.postgres import embedded

    url = embedded.running_url(POSTGRES_DIR)
    if url is None:
        raise typer.Exit(1)
    if role is not None:
        urls = native_roles.urls(url)
        by_role = {
            native_roles.OWNER: urls.owner,
            native_roles.APP: urls.app,
            native_roles.ANALYST: urls.analyst,
            native_roles.AIRFLOW: urls.airflow,
        }
        if role not in by_role:
            raise typer.BadParameter(f"one of {', '.join(by_role)}", param_hint="--role")
        url = by_role[role]
    print(url)


@toxiproxy_app.command("build")
def toxiproxy_build() -> None:
    """Build the Toxiproxy server with Go (once); prints the binary's path."""
    from devstack import toxiproxy

    try:
        print(toxiproxy.ensure_binary())
    except toxiproxy.ToxiproxyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from exc


@app.command()
def generate(
    path: Annotated[Path, typer.Argument(help="File to write.")],
    rows: Annotated[int, typer.Option(help="Number of rows.")] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same file).")] = 42,
) -> None:
    """Write a synthetic file in the challenge's format (deterministic)."""
    from devstack.generate import generate as write

    write(path, rows, seed)
    print(f"wrote {rows} rows to {path}")


@app.command()
def stack(
    action: Annotated[str, typer.Argument(help="all, up, status, logs, down or clean")],
) -> None:
    """The whole stack (`make all|status|logs|down|clean`)."""
    from devstack.stack import main

    main([action])


if __name__ == "__main__":
    app()
