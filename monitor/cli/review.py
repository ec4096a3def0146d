"""Commands of human review: ``review serve``, ``reviewer add|list|disable``, ``labels export``.

Each command reads the configuration the same way (`monitor.cli.options`: ``--config``, else ./monitor.toml,
else defaults, with environment overrides).
"""

from __future__ import annotations

import socket
import sys

import click
from sqlalchemy import Engine

from monitor.cli.options import config_option, fail, load
from monitor.config import Config


def _setup(config_path: str | None) -> tuple[Config, Engine]:
    """The configuration and an engine on an existing database (a missing table is reported as one line by
    the command line's safety net, `monitor.cli.errors`)."""
    from monitor.storage.db import make_engine

    config = load(config_path, existing_database=True)
    return config, make_engine(config.database.url)


@click.group()
def review() -> None:
    """The review web page."""


@review.command()
@config_option
@click.option("--host", default=None, help="Interface to listen on (default: review.host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default: review.port).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM certificate: serve HTTPS (default: review.certfile).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="PEM private key for --certfile (default: review.keyfile).")
def serve(config_path: str | None, host: str | None, port: int | None, certfile: str | None,
          keyfile: str | None) -> None:
    """Serve the review page until interrupted."""
    import uvicorn

    from monitor.review.app import uvicorn_config

    config, engine = _setup(config_path)
    from sqlalchemy import inspect

    missing = [t for t in ("reviewers", "samples", "labels", "records") if not inspect(engine).has_table(t)]
    if missing:  # the page would answer 500 to every request: say so now, once
        fail(f"the database has no Watchkeeper schema (no table {missing[0]}): run `watchkeeper db upgrade`")
    review = config.review
    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together")
    certfile, keyfile = certfile or review.certfile, keyfile or review.keyfile
    host = host or review.host
    port = review.port if port is None else port
    scheme = "https" if certfile else "http"
    if certfile and keyfile and (problem := _tls_problem(certfile, keyfile)):
        fail(problem)
    sock = _listen(host, port)
    port = sock.getsockname()[1]  # the port taken, also when 0 asked for any
    if not certfile and host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"watchkeeper: WARNING: plain HTTP on {host}: reviewer tokens, cookies and prompts cross the "
                   "network in clear. Use --certfile/--keyfile, or a TLS proxy listed in review.trusted_proxies.",
                   err=True)
    click.echo(f"review page on {scheme}://{host}:{port}/", err=True)
    server = uvicorn.Server(uvicorn_config(engine, config, host=host, port=port, certfile=certfile, keyfile=keyfile))
    server.run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here rather than by uvicorn: a port in use or a host that is not this
    machine's is one line and exit 2 before the page is announced (uvicorn announced nothing useful: it logged
    ``[Errno 98]`` after our "review page on …" line and exited 3)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port or review.port, "
             "or a --host of this machine")
    sock.set_inheritable(True)
    return sock


def _tls_problem(certfile: str, keyfile: str) -> str | None:
    """Why uvicorn could not serve HTTPS with this pair, in one line: it raised ssl.SSLError (a traceback) for
    a file that is not PEM, or a key that does not match the certificate."""
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile, password="")
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        return (f"cannot serve HTTPS with certfile {certfile} and keyfile {keyfile} ({reason}): they must be a "
                "PEM certificate (chain) and its unencrypted PEM private key")
    return None


@click.group()
def reviewer() -> None:
    """People who label samples."""


@reviewer.command("add")
@config_option
@click.argument("name")
def add_reviewer(config_path: str | None, name: str) -> None:
    """Create reviewer NAME and print their token (shown this once only)."""
    from monitor.review.auth import ReviewerError, ReviewerRegistry

    _, engine = _setup(config_path)
    try:
        token = ReviewerRegistry(engine).add(name)
    except ReviewerError as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(1)
    click.echo(f"reviewer {name!r} created; their token (shown once, keep it safe):", err=True)
    click.echo(token)


@reviewer.command("list")
@config_option
def list_reviewers(config_path: str | None) -> None:
    """Reviewers and whether they are active (never their tokens)."""
    from monitor.review.auth import ReviewerRegistry

    _, engine = _setup(config_path)
    for r in ReviewerRegistry(engine).list():
        click.echo(f"{r.name}\t{'active' if r.active else 'disabled'}\t{r.created_at:%Y-%m-%d %H:%M}")


@reviewer.command("disable")
@config_option
@click.argument("name")
def disable_reviewer(config_path: str | None, name: str) -> None:
    """Revoke NAME's token and sessions; their labels stay."""
    from monitor.review.auth import ReviewerError, ReviewerRegistry

    _, engine = _setup(config_path)
    try:
        ReviewerRegistry(engine).disable(name)
    except ReviewerError as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(1)
    click.echo(f"reviewer {name!r} disabled", err=True)


@reviewer.command("revoke")
@config_option
@click.argument("name")
def revoke_reviewer(config_path: str | None, name: str) -> None:
    """End every session of NAME now, on every server; their token still signs in."""
    from monitor.review.auth import ReviewerError, ReviewerRegistry

    _, engine = _setup(config_path)
    try:
        ReviewerRegistry(engine).revoke_sessions(name)
    except ReviewerError as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(1)
    click.echo(f"every session of reviewer {name!r} ended", err=True)


@click.group()
def labels() -> None:
    """Reviewers' labels."""


@labels.command("export")
@config_option
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), required=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (default: standard output).")
def export_labels(config_path: str | None, fmt: str, out: str | None) -> None:
    """Export all labels with their records' stored text, for analysts or fine-tuning."""
    from monitor.review.export import write_labels

    config, engine = _setup(config_path)
    cipher = config.storage.cipher()
    if out is None:
        count = write_labels(engine, fmt, sys.stdout, cipher=cipher)  # type: ignore[arg-type]
    else:
        with open(out, "w", encoding="utf-8", newline="") as fh:
            count = write_labels(engine, fmt, fh, cipher=cipher)  # type: ignore[arg-type]
    click.echo(f"{count} labels exported", err=True)
