"""One model instance from one row of raw SQL, for the hottest paths (every API claim).

``Model.objects.raw()`` works out, on every query, how the columns map onto the model
and which converters apply; on the claim path that cost more than the query itself.
Here that is worked out once per model and connection, and the row is read with a
plain cursor. The query selects ``select_list(Model)`` first, then any extra columns,
which become attributes of the instance. Columns are matched by position (checked by
count). The query runs on the default database, and its parameters are passed to the
driver as they are (ints and strings on the claim path).
"""

from __future__ import annotations

import functools

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model


@functools.cache
def select_list(model: type[Model], alias: str = "") -> str:
    """Every concrete column of ``model``, in field order, for a SELECT (built once)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{field.column}"' for field in model._meta.concrete_fields)


def fetch_instance(model: type[Model], sql: str, params, extra: tuple[str, ...] = ()) -> Model | None:
    """The first row of ``sql`` as an instance of ``model`` (or None when there is none)."""
    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    names, converters = _plan(connection, model)
    if len(row) != len(names) + len(extra):
        raise ValueError(f"Expected {len(names)} columns of {model.__name__} and {len(extra)} extra, got {len(row)}.")
    values = list(row[: len(names)])
    for index, column, functions in converters:
        for convert in functions:
            values[index] = convert(values[index], column, connection)
    instance = model.from_db(connection.alias, names, values)
    for name, value in zip(extra, row[len(names):]):
        setattr(instance, name, value)
    return instance


def _plan(connection, model: type[Model]):
    """The attribute names and the converters (as the ORM's compiler applies them) of the
    model's columns; kept on the connection, since converters are bound to its backend."""
    plans = connection.__dict__.setdefault("_raw_instance_plans", {})
    plan = plans.get(model)
    if plan is None:
        fields = model._meta.concrete_fields
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if functions:
                converters.append((index, column, functions))
        plan = plans[model] = ([field.attname for field in fields], converters)
    return plan
