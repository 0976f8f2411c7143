from django import template
from django.contrib.humanize.templatetags.humanize import intcomma

register = template.Library()

_EXACT_DIGITS = 16


@register.filter
def bignum(value: int) -> str:
    """Exact with separators up to 16 digits; beyond that "about 5.2 × 10^30"."""
    if value is None:
        return ""
    value = int(value)
    digits = len(str(abs(value)))
    if digits <= _EXACT_DIGITS:
        return intcomma(value)
    mantissa = value / 10 ** (digits - 1)
    return f"about {mantissa:.1f} \u00d7 10^{digits - 1}"

