"""`watchkeeper silence add|list|expire`: mute an alert for a while, with a reason everyone can read.

    watchkeeper silence add --rule toxicity_rate --scope model=m1 --for 2h --reason "known, fix deploying"
    watchkeeper silence list [--all]
    watchkeeper silence expire 3
"""

from __future__ import annotations

import getpass
import re
import sys
from datetime import UTC, datetime

import click

from monitor.cli.options import config_option, load
from monitor.durations import parse_duration

_SCOPE = re.compile(r"^(\*|global|(model|app)=.+)$")


@click.group()
def silence() -> None:
    """Silence alerts: recorded, not sent, until the silence ends."""


@silence.command("add")
@config_option
@click.option("--rule", required=True, help="Rule name (see [alerts.rules]) or a pattern such as '*'.")
@click.option("--scope", required=True, help="global, model=NAME, app=NAME, or a pattern such as 'model=gpt-*'.")
@click.option("--for", "duration", required=True, help="How long: 30m, 2h, 1d (at most alerts.max_silence).")
@click.option("--reason", required=True, help="Why; shown in `silence list`.")
@click.option("--by", "created_by", default=None, help="Who (default: the current user).")
def add(config_path: str | None, rule: str, scope: str, duration: str, reason: str, created_by: str | None) -> None:
    """Silence RULE in SCOPE for a while."""
    from monitor.alerts import silences
    from monitor.storage.db import make_engine

    config = load(config_path, existing_database=True)
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    if not any(c in rule for c in "*?[") and rule not in config.alerts.rules:
        raise click.BadParameter(f"no rule {rule!r}; configured: {', '.join(sorted(config.alerts.rules))}",
                                 param_hint="--rule")
    if not _SCOPE.match(scope):
        raise click.BadParameter("use global, model=NAME, app=NAME or '*'", param_hint="--scope")
    engine = make_engine(config.database.url)
    try:
        with engine.begin() as conn:
            made = silences.add_silence(conn, rule=rule, scope=scope, duration=length, reason=reason,
                                        now=datetime.now(UTC), max_duration=config.alerts.max_silence,
                                        created_by=created_by or getpass.getuser())
    except ValueError as exc:
        click.echo(f"watchkeeper: {exc}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()
    click.echo(f"silence {made.id}: {made.rule} {made.scope} until {made.ends_at:%Y-%m-%d %H:%M:%S} UTC")


@silence.command("list")
@config_option
@click.option("--all", "include_ended", is_flag=True, help="Include ended and expired silences.")
def list_(config_path: str | None, include_ended: bool) -> None:
    """Show active silences."""
    from monitor.alerts import silences
    from monitor.storage.db import make_engine

    config = load(config_path, existing_database=True)
    engine = make_engine(config.database.url)
    now = datetime.now(UTC)
    try:
        with engine.connect() as conn:
            found = silences.list_silences(conn, now, include_ended=include_ended)
    finally:
        engine.dispose()
    if not found:
        click.echo("no active silences" if not include_ended else "no silences")
        return
    click.echo(f"{'id':>4}  {'rule':<22} {'scope':<24} {'until (UTC)':<19}  {'by':<12} reason")
    for s in found:
        state = "" if s.active(now) else " (ended)"
        click.echo(f"{s.id:>4}  {s.rule:<22} {s.scope:<24} {s.ends_at:%Y-%m-%d %H:%M:%S}  "
                   f"{(s.created_by or '-'):<12} {s.reason}{state}")


@silence.command("expire")
@config_option
@click.argument("silence_id", type=int)
def expire(config_path: str | None, silence_id: int) -> None:
    """End silence SILENCE_ID now."""
    from monitor.alerts import silences
    from monitor.storage.db import make_engine

    config = load(config_path, existing_database=True)
    engine = make_engine(config.database.url)
    try:
        with engine.begin() as conn:
            ok = silences.expire_silence(conn, silence_id, datetime.now(UTC))
    finally:
        engine.dispose()
    if not ok:
        click.echo(f"watchkeeper: no active silence {silence_id}", err=True)
        sys.exit(1)
    click.echo(f"silence {silence_id} expired")
