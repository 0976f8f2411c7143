"""The customer history's events in words, on every page that lists them
(``coupons.events_display``): ``{{ event|event_label }}``, ``{{ event|event_details }}``."""

from django import template

from coupons import events_display

register = template.Library()


@register.filter
def event_label(event):
    return events_display.event_label(event)


@register.filter
def event_details(event):
    return events_display.event_details(event)
