"""Database failures a command cannot recover from, as one line for a person (the command line's safety
net: `monitor.cli.LazyGroup` turns them into that line and an exit code instead of a traceback)."""

from __future__ import annotations

from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, ProgrammingError

from monitor.cli.options import EXIT_UNAVAILABLE, EXIT_USAGE

DATABASE_ERRORS = (ArgumentError, NoSuchModuleError, DBAPIError)

_MISSING_TABLE = ("no such table", "undefinedtable", "does not exist", "no such column", "undefinedcolumn")


def describe(exc: BaseException) -> tuple[str, int]:
    """(message, exit code) for a database error. Messages never quote the URL (it may hold a password)."""
    if isinstance(exc, NoSuchModuleError):
        dialect = str(exc).rsplit(":", 1)[-1].strip()
        return (f"database.url names a database driver that is not installed or not known ({dialect}); use "
                "postgresql://… (or postgresql+psycopg://…) or sqlite:///path", EXIT_USAGE)
    if isinstance(exc, ArgumentError):
        return ("database.url is not a database URL (expected postgresql://user@host/db or sqlite:///path)",
                EXIT_USAGE)
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = detail[0][:200] if detail else type(exc).__name__
    text = " ".join(detail).lower() + type(getattr(exc, "orig", exc)).__name__.lower()
    if isinstance(exc, ProgrammingError | OperationalError) and any(m in text for m in _MISSING_TABLE):
        return f"the database has no Watchkeeper schema ({first}): run `watchkeeper db upgrade`", EXIT_USAGE
    if isinstance(exc, OperationalError):
        return f"the database is not answering ({first})", EXIT_UNAVAILABLE
    return f"database error: {first}", EXIT_USAGE
