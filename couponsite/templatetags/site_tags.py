"""Template filters of the site as a whole (registered in settings' TEMPLATES libraries)."""

from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """``timedelta(minutes=90)`` as "1 hour 30 minutes"; under a minute, in seconds."""
    if not isinstance(value, timedelta):
        return ""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts)
