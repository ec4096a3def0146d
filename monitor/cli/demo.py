"""`watchkeeper demo`: the whole product on one machine (`monitor.synthetic.demo`)."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--rate", default=200.0, show_default=True, help="Generated records per second.")
@click.option("--malformed", default=0.002, show_default=True,
              help="Share of malformed messages (the dead_letter_rate rule fires above 1%).")
@click.option("--seed", default=1, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default=".watchkeeper-demo", show_default=True,
              help="Where the demo keeps its SQLite database and config.")
@click.option("--duration", type=float, default=0.0, help="Stop after this many seconds (0 = until Ctrl-C).")
@click.option("--review-port", type=int, default=8765, show_default=True, help="Port of the review page.")
def demo(rate: float, malformed: float, seed: int, workdir: str, duration: float, review_port: int) -> None:
    """Everything local: a broker, synthetic traffic with incidents, SQLite, console alerts."""
    from monitor.synthetic.demo import run_demo

    sys.exit(run_demo(rate, malformed, seed, workdir, duration, review_port))
