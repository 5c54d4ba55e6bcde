"""SQLAlchemy's errors as imgproc's: one translator for the records' database and the vendors' own.

After httpx's ``map_httpcore_exceptions``: the library's errors are caught at
the boundary, looked up in a table, and raised again as this project's
(``TransientError`` / ``PermanentError``, code ``database_failed``).

Whether another attempt may succeed is decided by the driver's own error
number where it gives one (MySQL/MariaDB's, SQLite's result code): a server
gone away or a locked SQLite file passes, an unknown column or a syntax
error does not. Without a number, SQLAlchemy's class decides (the most
specific entry of ``CLASSES`` wins), and a connection SQLAlchemy found dead
is always worth another try.

Messages carry the driver's class and the first line of its message (never
SQLAlchemy's, which adds the statement and its parameters), with the URL's
password scrubbed in every encoding it may take. The driver's exception does
not ride along (``from None``): its text is not scrubbed, and rq stores a
failed job's traceback.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from imgproc.errors import JobError, PermanentError, TransientError

#: MySQL/MariaDB error numbers another attempt may get past; every other number is final
#: (1045 access denied, 1054 unknown column, 1064 syntax, 1146 no such table).
MYSQL_TRANSIENT = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout
        1213,  # deadlock
        1927,  # connection killed (MariaDB)
        2002,  # cannot connect (socket)
        2003,  # cannot connect (TCP)
        2005,  # unknown host (a name that did not resolve this time, as fetch treats it)
        2006,  # server has gone away
        2013,  # lost connection during a query
        2055,  # lost connection (system error)
        4031,  # disconnected for inactivity (MariaDB)
    }
)
#: SQLite's primary result codes another attempt may get past: BUSY and LOCKED ("database is
#: locked": another writer), IOERR, FULL (as a full disk is for local storage), CANTOPEN, PROTOCOL.
#: SQLITE_ERROR (1: no such column, syntax) and the rest are final.
SQLITE_TRANSIENT = frozenset({5, 6, 10, 13, 14, 15})

#: Without an error number: SQLAlchemy's class -> imgproc's; the most specific match wins.
CLASSES: dict[type[Exception], type[JobError]] = {
    sa.exc.SQLAlchemyError: PermanentError,
    sa.exc.OperationalError: TransientError,  # the connection rather than the statement
    sa.exc.InterfaceError: TransientError,
    sa.exc.DisconnectionError: TransientError,
    sa.exc.TimeoutError: TransientError,  # the pool's: no connection free in time
}

#: The password of any URL written out in a message: ``scheme://user:PASSWORD@``.
_USERINFO_RE = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


def error_number(exc: sa.exc.SQLAlchemyError) -> tuple[str, int] | None:
    """The driver's own error number: ``("mysql", 2013)``, ``("sqlite", 5)``; None where it gives none."""
    orig = exc.orig if isinstance(exc, sa.exc.StatementError) else None
    if orig is None:
        return None
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return "sqlite", code & 0xFF  # extended codes carry the primary one in their low byte
    number = getattr(orig, "errno", None) or (orig.args[0] if orig.args else None)
    # pymysql gives 0 for "no number" (an InterfaceError on a closed connection): not MySQL's.
    if isinstance(number, int) and not isinstance(number, bool) and number >= 1000:
        return "mysql", number
    return None


def kind(exc: sa.exc.SQLAlchemyError) -> type[JobError]:
    """``TransientError`` where another attempt may succeed, else ``PermanentError``."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return TransientError  # the dialect saw the connection die
    found = error_number(exc)
    if found is not None:
        family, number = found
        transient = number in (MYSQL_TRANSIENT if family == "mysql" else SQLITE_TRANSIENT)
        return TransientError if transient else PermanentError
    match, mapped = sa.exc.SQLAlchemyError, PermanentError
    for cls, to in CLASSES.items():
        if isinstance(exc, cls) and issubclass(cls, match):
            match, mapped = cls, to
    return mapped


def secrets_of(url: str | sa.URL) -> set[str]:
    """Every form the URL's password may take in a message: plain, percent-encoded, as written."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return set()
    if not parsed.password:
        return set()
    password = str(parsed.password)
    forms = {
        password,
        urllib.parse.quote(password, safe=""),
        urllib.parse.quote(password),
        urllib.parse.quote_plus(password),
    }
    # As SQLAlchemy renders it, and as the URL's own text has it.
    rendered = parsed.render_as_string(hide_password=False)
    for text in (rendered, url if isinstance(url, str) else rendered):
        userinfo = urllib.parse.urlsplit(text).netloc.rpartition("@")[0]
        if ":" in userinfo:
            forms.add(userinfo.partition(":")[2])
    # Each as a driver's str(args) shows it, inside the repr of its message: backslashes doubled,
    # one kind of quote escaped.
    for form in list(forms):
        escaped = form.encode("unicode_escape").decode("ascii")
        forms |= {repr(form)[1:-1], escaped, escaped.replace("'", "\\'"), escaped.replace('"', '\\"')}
    return {form for form in forms if form}


def scrub(text: str, url: str | sa.URL) -> str:
    """``text`` without the URL's password in any of its forms, nor any URL's userinfo password."""
    forms = sorted(secrets_of(url), key=len, reverse=True)  # the longest first: one may hold another
    if forms:
        # Case-insensitive: percent-encoding's hex digits may be written in either case.
        text = re.sub("|".join(map(re.escape, forms)), "***", text, flags=re.IGNORECASE)
    return _USERINFO_RE.sub(r"\1***@", text)


def describe(exc: sa.exc.SQLAlchemyError, url: str | sa.URL) -> str:
    """The driver's class and the first line of its message, scrubbed (not the statement or its values)."""
    source = exc.orig if isinstance(exc, sa.exc.StatementError) and exc.orig is not None else exc
    lines = str(source).splitlines()
    return scrub(f"{type(source).__name__}: {lines[0] if lines else ''}", url)


def translate(exc: sa.exc.SQLAlchemyError, url: str | sa.URL, what: str) -> JobError:
    """The error to raise for ``exc``: ``{what} failed: {driver's class}: {its message}``, database_failed."""
    return kind(exc)(f"{what} failed: {describe(exc, url)}", code="database_failed")


@contextmanager
def sql_errors(url: str | sa.URL, what: str) -> Iterator[None]:
    """SQLAlchemy's errors inside the block raised as ``translate`` makes them."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, url, what) from None
