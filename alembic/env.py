"""Alembic environment: migrations run against WATCHKEEPER_DATABASE_URL or the configured URL."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from monitor.storage.db import make_engine
from monitor.storage.schema import metadata

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = os.environ.get("WATCHKEEPER_DATABASE_URL") if config.config_file_name else None
url = url or config.get_main_option("sqlalchemy.url")


def run_migrations() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
