"""Template filters of the site as a whole (registered in settings' TEMPLATES libraries)."""

from datetime import timedelta

from django import template

from couponsite.wording import counted

register = template.Library()


@register.filter
def duration(value: timedelta | None) -> str:
    """``timedelta(minutes=90)`` as "1 hour 30 minutes"; under a minute, in seconds."""
    if not isinstance(value, timedelta):
        return ""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return counted(seconds, "second", "seconds")
    parts = []
    for singular, plural, size in (("day", "days", 86400), ("hour", "hours", 3600), ("minute", "minutes", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(counted(count, singular, plural))
    return " ".join(parts)
