"""The subscribe form's daily records (`newsletter.subscribe.DailyRecord`): one row per address
and day a confirmation email went to, keyed by a hash. Functions of a connection."""

from __future__ import annotations

import datetime as dt
import sqlite3


def record(connection: sqlite3.Connection, record_key: str, today: dt.date) -> bool:
    """Record `record_key` for `today`; False if it was already recorded. Earlier days' rows go."""
    connection.execute("DELETE FROM confirmation_request WHERE day < ?", (today.isoformat(),))
    inserted = connection.execute(
        "INSERT OR IGNORE INTO confirmation_request (record, day) VALUES (?, ?)", (record_key, today.isoformat())
    )
    return inserted.rowcount == 1


def forget(connection: sqlite3.Connection, record_key: str) -> None:
    connection.execute("DELETE FROM confirmation_request WHERE record = ?", (record_key,))
