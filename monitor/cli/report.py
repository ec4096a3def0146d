"""`watchkeeper report`: the latest Evidently drift report of each model, or a new one now."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from monitor.cli.options import config_option, fail, load


@click.command("report")
@config_option
@click.option("--model", help="only this model")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="write the report's HTML here")
@click.option("--run", "run_now", is_flag=True, help="make a report now (current window ending now) first")
def report(config_path: str | None, model: str | None, html_path: str | None, run_now: bool) -> None:
    """Print the latest Evidently drift report of each model; optionally write its HTML or make one now."""
    from monitor.jobs.reports import format_summary, latest_reports, run_drift_reports
    from monitor.storage.db import SchemaNotReady, check_schema, make_engine

    config = load(config_path, existing_database=True)
    engine = make_engine(config.database.url)
    try:
        try:
            check_schema(engine, config.database.url)
        except SchemaNotReady as exc:
            fail(str(exc))
        if run_now:
            made = run_drift_reports(
                engine, config.reports, datetime.now(UTC), models=None if model is None else [model]
            )
            click.echo(f"made {len(made)} report(s)")
        found = latest_reports(engine, model)
        if not found:
            raise click.ClickException(
                "no drift report yet" + (f" for model {model}" if model else "") + " (try --run)"
            )
        for report in found:
            click.echo(format_summary(report) + "\n")
        if html_path:
            if len(found) > 1:
                raise click.UsageError("several models have reports: choose one with --model to write HTML")
            if found[0].html is None:
                raise click.ClickException(f"report #{found[0].id} has no HTML ({found[0].summary.get('status')})")
            with open(html_path, "w", encoding="utf-8") as fh:
                fh.write(found[0].html)
            click.echo(f"wrote {html_path}")
    finally:
        engine.dispose()
