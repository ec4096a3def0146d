"""`watchkeeper compare`: two models (or one model before and after a change) side by side, from what is stored.

    watchkeeper compare --model m-v1 --model m-v2 --since 7d
    watchkeeper compare --model m-v1 --model m-v2 --app support-bot --from 2026-11-01 --to 2026-11-08
    watchkeeper compare --model m-v1 --model m-v2 --by app --format html --output ab.html
    watchkeeper compare --model m-v1 --split 2026-11-20T12:00 --since 14d    # before vs from the upgrade on
    watchkeeper compare --model m-v1 --model m-v2 --format json --fail-if-worse    # a CI gate

A is the first ``--model`` (the baseline), B the second (the candidate); with ``--split T`` and one model, A is
its traffic in [start, T) and B in [T, end). Exit status 1 with ``--fail-if-worse`` when B is significantly
worse on any metric that has a good direction.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import click

from monitor.cli.options import config_option, fail, load
from monitor.durations import parse_since


def _time(text: str, option: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command("compare")
@config_option
@click.option("--model", "models", multiple=True, required=True,
              help="Baseline A, then candidate B (give it twice); once with --split.")
@click.option("--app", default=None, help="Only this app's traffic.")
@click.option("--since", default=None, help="Window start: 7d, 12h or an ISO time (default 7d, ending now).")
@click.option("--from", "start_text", default=None, help="Window start (ISO time); with --to.")
@click.option("--to", "end_text", default=None, help="Window end, exclusive (ISO time; default now).")
@click.option("--split", "split_text", default=None,
              help="One model before (A) and from (B) this time on, e.g. the upgrade's deploy time.")
@click.option("--by", type=click.Choice(["app"]), default=None, help="Also compare within each app.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
@click.option("--alpha", type=click.FloatRange(0.0001, 0.5), default=0.05, show_default=True,
              help="Family-wise error rate over all metrics (Holm).")
@click.option("--fail-if-worse", is_flag=True, help="Exit 1 when B is significantly worse on any metric.")
def compare(config_path: str | None, models: tuple[str, ...], app: str | None, since: str | None,
            start_text: str | None, end_text: str | None, split_text: str | None, by: str | None, fmt: str,
            output: str | None, alpha: float, fail_if_worse: bool) -> None:
    """Compare model B with model A: every rate, latency and length, review accuracy and shadow agreement,
    with intervals and a verdict corrected for the number of metrics."""
    if split_text is None and len(models) != 2:
        raise click.UsageError("give --model twice (A then B), or once with --split TIME")
    if split_text is not None and len(models) != 1:
        raise click.UsageError("--split compares one model with itself: give --model once")
    if since is not None and start_text is not None:
        raise click.UsageError("use --since or --from, not both")
    end = _time(end_text, "--to") if end_text else datetime.now(UTC)
    if start_text is not None:
        start = _time(start_text, "--from")
    elif since is not None:
        start = _time(since, "--since")
    else:
        start = end - timedelta(days=7)
    if start >= end:
        raise click.UsageError(f"the window is empty: {start.isoformat()} is not before {end.isoformat()}")

    from monitor.compare.load import load_side
    from monitor.compare.metrics import compare_sides
    from monitor.compare.render import render
    from monitor.storage.db import SchemaNotReady, check_schema, make_engine

    config = load(config_path, existing_database=True)
    engine = make_engine(config.database.url)
    try:
        try:
            check_schema(engine, config.database.url)
        except SchemaNotReady as exc:
            fail(str(exc))
        confidence = 0.95
        if split_text is not None:
            split = _time(split_text, "--split")
            if not start < split < end:
                raise click.UsageError(f"--split {split.isoformat()} must lie inside the window "
                                       f"{start.isoformat()} .. {end.isoformat()}")
            model = models[0]
            side_a = load_side(engine, model, start, split, app=app, label=f"{model} before", confidence=confidence)
            side_b = load_side(engine, model, split, end, app=app, label=f"{model} after", confidence=confidence)
            windows = {"window_a": f"{start.isoformat()} .. {split.isoformat()}",
                       "window_b": f"{split.isoformat()} .. {end.isoformat()}"}
        else:
            side_a = load_side(engine, models[0], start, end, app=app, confidence=confidence)
            side_b = load_side(engine, models[1], start, end, app=app, confidence=confidence)
            windows = {"window_a": f"{start.isoformat()} .. {end.isoformat()}",
                       "window_b": f"{start.isoformat()} .. {end.isoformat()}"}
    finally:
        engine.dispose()
    if side_a.n == 0 or side_b.n == 0:
        empty = side_a.label if side_a.n == 0 else side_b.label
        raise click.ClickException(f"no records of {empty} in the window" + (f" for app {app}" if app else ""))
    result = compare_sides(side_a, side_b, by_app=by == "app", alpha=alpha, confidence=confidence,
                           toxic_at=config.detectors.toxicity.threshold,
                           low_feedback_below=config.sampling.low_feedback_below)
    result.context.update(windows)
    if app:
        result.context["app"] = app
    text = render(result, fmt)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text)
    if fail_if_worse and any(m.verdict == "worse" for m in result.metrics):
        sys.exit(1)
