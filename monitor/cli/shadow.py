"""`watchkeeper shadow replay|status`: replay past prompts through the reference model(s) on demand, and
the agreement rates so far. The daemon runs the same replayer as a scheduled job (`monitor.shadow`)."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from monitor.cli.options import config_option, load
from monitor.config import Config, ReferenceConfig
from monitor.durations import parse_since

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from monitor.shadow.replay import ReplayStats


def _since(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _references(config: Config, name: str | None) -> list[ReferenceConfig]:
    refs = [r for r in config.shadow.references if name in (None, r.model, r.name)]
    if not refs:
        raise click.ClickException(
            "no reference model configured" + (f" named {name!r}" if name else "")
            + ": add [[shadow.references]] to monitor.toml or set WATCHKEEPER_REFERENCE_URL and "
            "WATCHKEEPER_REFERENCE_MODEL"
        )
    return refs


@click.group()
def shadow() -> None:
    """Shadow replay against reference models."""


@shadow.command()
@config_option
@click.option("--since", "since_text", default="1d", show_default=True,
              help="Replay records from this time on: 7d, 12h, 30m ago or an ISO 8601 time.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Most records to replay per reference.")
@click.option("--reference", default=None, help="Only this reference (model or name); default all.")
@click.option("--model", default=None, help="Only records of this production model.")
@click.option("--sampled-only", is_flag=True, help="Only records the sampler picked (as the daemon does).")
@click.option("--ignore-daily-cap", is_flag=True, help="Backfill beyond the daily cap (rate limits still hold).")
def replay(config_path: str | None, since_text: str, limit: int, reference: str | None, model: str | None,
           sampled_only: bool, ignore_daily_cap: bool) -> None:
    """Replay past records against the reference model(s) and store the comparisons."""
    from monitor.storage.db import make_engine

    config = load(config_path, existing_database=True)
    since = _since(since_text)
    engine = make_engine(config.database.url)
    failed = False
    try:
        for ref in _references(config, reference):
            stats = asyncio.run(_replay_cli(engine, config, ref, since, limit, model, sampled_only,
                                            ignore_daily_cap))
            failed |= stats is None or stats.stopped == "outage"
    finally:
        engine.dispose()
    if failed:
        raise SystemExit(1)


async def _replay_cli(engine: Engine, config: Config, ref: ReferenceConfig, since: datetime, limit: int,
                      model: str | None, sampled_only: bool, ignore_daily_cap: bool) -> ReplayStats | None:
    from inference.backoff import Backoff
    from inference.base import PermanentError, TransientError
    from inference.budget import ReplayBudget
    from monitor.shadow.candidates import select_candidates, used_today
    from monitor.shadow.replay import ShadowReplayer, answer_detectors, build_backend, build_comparer

    shadow_cfg = config.shadow
    backend = build_backend(ref)
    try:
        try:
            await backend.check()
        except (TransientError, PermanentError) as exc:
            click.echo(f"reference {backend.name} ({ref.model}) is not usable: {exc}", err=True)
            return None
        budget = ReplayBudget(shadow_cfg.prompts_per_minute, shadow_cfg.max_concurrent,
                              limit if ignore_daily_cap else shadow_cfg.daily_cap)
        if not ignore_daily_cap:
            budget.sync_used_today(used_today(engine, ref.model))
            limit = min(limit, budget.remaining_today)
        candidates = select_candidates(engine, ref.model, since=since, limit=limit,
                                       sampled_only=sampled_only, model=model)
        replayer = ShadowReplayer(
            engine, backend, build_comparer(shadow_cfg, answer_detectors(config)), budget,
            replay_as=shadow_cfg.replay_as,
            boost_disagreements=shadow_cfg.boost_disagreements, sampling_window_s=config.sampling.window_s,
            backoff=Backoff(shadow_cfg.outage_backoff_initial_s, shadow_cfg.outage_backoff_max_s),
        )
        with click.progressbar(length=len(candidates), label=f"{ref.model} @ {backend.name}",
                               file=sys.stderr) as bar:
            stats = await replayer.replay(candidates, on_progress=bar.update)
        click.echo(f"{ref.model}: {stats.compared} compared, {stats.disagreed} disagree, "
                   f"{stats.rejected} rejected, {stats.left} left"
                   + (f" (stopped: {stats.stopped})" if stats.stopped else ""))
        return stats
    finally:
        await backend.aclose()


@shadow.command()
@config_option
@click.option("--since", "since_text", default="1d", show_default=True, help="Window: 7d, 12h or ISO time.")
def status(config_path: str | None, since_text: str) -> None:
    """Agreement rate per production model and reference model."""
    from monitor.shadow.candidates import agreement_rates
    from monitor.storage.db import make_engine

    config = load(config_path, existing_database=True)
    engine = make_engine(config.database.url)
    try:
        rates = agreement_rates(engine, _since(since_text))
    finally:
        engine.dispose()
    if not rates:
        click.echo("no comparisons in this window")
    for (model, ref), (n, rate) in sorted(rates.items()):
        click.echo(f"{model} vs {ref}: {rate:.1%} agree over {n} comparisons")
