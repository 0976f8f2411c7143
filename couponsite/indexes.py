"""Indexes built by migrations on tables that are written all the time (events, customers).

On PostgreSQL an index is built ``CONCURRENTLY``: inserts and updates go on while it is
built (a plain ``CREATE INDEX`` blocks every write to the table, every claim's event,
for the whole build). Such a migration declares ``atomic = False``: ``CONCURRENTLY``
cannot run inside a transaction. A concurrent build that failed (or was cancelled)
leaves an INVALID index of that name behind, which ``IF NOT EXISTS`` would keep: it is
dropped first, so running ``migrate`` again finishes the job. Other databases (SQLite,
the embedded default) get a plain index through the schema editor.
"""

from django.db import DatabaseError

POSTGRESQL = "postgresql"


class ExtensionMissing(DatabaseError):
    """A PostgreSQL extension the migration needs is not there and may not be created."""


def extension_ensure(schema_editor, name: str) -> None:
    """``CREATE EXTENSION IF NOT EXISTS name``, with an error that says what to do when the
    migrating role may not create it (a trusted extension such as pg_trgm needs the
    CREATE privilege on the database, PostgreSQL 13+; others need a superuser)."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = %s", [name])
        if cursor.fetchone():
            return
        try:
            cursor.execute(f"CREATE EXTENSION IF NOT EXISTS {schema_editor.quote_name(name)}")
        except DatabaseError as error:
            database = schema_editor.connection.settings_dict["NAME"]
            raise ExtensionMissing(
                f"The PostgreSQL extension {name} is not installed in database {database!r} and this "
                f"role may not create it ({str(error).strip()}). Run, as a superuser or the database's "
                f"owner: psql -d {database} -c 'CREATE EXTENSION IF NOT EXISTS {name}' and then "
                "run migrate again (see README, Production)."
            ) from error


def index_create(schema_editor, name: str, table: str, definition: str) -> None:
    """``CREATE INDEX CONCURRENTLY IF NOT EXISTS name ON table definition`` (PostgreSQL),
    after dropping an INVALID index of that name left by a failed build."""
    invalid_index_drop(schema_editor, name)
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {schema_editor.quote_name(name)} "
        f"ON {schema_editor.quote_name(table)} {definition}"
    )


def index_drop(schema_editor, name: str) -> None:
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")


def invalid_index_drop(schema_editor, name: str) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND c.relnamespace = to_regnamespace(current_schema()) AND NOT i.indisvalid",
            [name],
        )
        invalid = cursor.fetchone() is not None
    if invalid:
        index_drop(schema_editor, name)


def index_is_valid(connection, name: str) -> bool | None:
    """True for a valid index, False for an INVALID one, None when there is none."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND c.relnamespace = to_regnamespace(current_schema())",
            [name],
        )
        row = cursor.fetchone()
    return None if row is None else row[0]
