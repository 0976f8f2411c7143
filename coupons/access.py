"""What a principal may see beyond pools (``pools.access`` holds the pool rule):
coupons, events and jobs of the pools it may see, and customers.

A principal limited to groups sees a customer (with their email and currency) only when
the customer holds, or held, a coupon of a pool it may see; and a customer nobody has
given a coupon yet (in no pool at all), so that a shop can create its customer and
update it again before the first claim. Updating a customer it may not see is refused
as if the customer did not exist.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from pools.access import is_unrestricted, pools_visible

from .models import Coupon, Customer, CustomerEvent


def visible_coupons(principal) -> Q:
    return Q() if is_unrestricted(principal) else Q(pool__in=pools_visible(principal))


def visible_events(principal) -> Q:
    return Q() if is_unrestricted(principal) else Q(pool__isnull=True) | Q(pool__in=pools_visible(principal))


def visible_customers(principal) -> Q:
    if is_unrestricted(principal):
        return Q()
    pools = pools_visible(principal)
    holds = Coupon.objects.filter(customer=OuterRef("pk"))
    history = CustomerEvent.objects.filter(customer=OuterRef("pk"))
    return (
        Q(Exists(holds.filter(pool__in=pools)))
        | Q(Exists(history.filter(pool__in=pools)))
        | (~Q(Exists(holds)) & ~Q(Exists(history)))
    )


def customers_visible(principal) -> QuerySet[Customer]:
    return Customer.objects.filter(visible_customers(principal))


def customer_visible(principal, customer: Customer) -> bool:
    return is_unrestricted(principal) or customers_visible(principal).filter(pk=customer.pk).exists()
