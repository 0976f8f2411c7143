"""What a principal may see beyond pools (``pools.access`` holds the pool rule):
coupons, events and jobs of the pools it may see, and customers.

A principal limited to groups sees a customer (with their email and currency) when the
customer holds, or held, a coupon of a pool it may see. A customer who holds none yet
is like a pool: one created by a limited key or user belongs to their groups
(``created_for``) and is seen by those groups' keys and users (a shop can create its
customer and update it again before the first claim); one created by an unrestricted
principal or the system belongs to no group and, like the pools of no group, is seen by
every user but by no key limited to groups. Updating a customer it may not see is
refused as if the customer did not exist.

Seeing is not acting: in the Management UI, the coupon actions (row menus, their dialog,
bulk actions, assigning a coupon to a customer) take ``CHANGE_COUPONS``; their views
require it and the pages offer them only to ``may_change_coupons`` users (templates ask
Django's ``perms.coupons.change_coupon``, the same permission).
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from pools.access import is_api_key, is_unrestricted, pool_scoped, pools_visible, principal_groups

from .models import Coupon, Customer, CustomerEvent

CHANGE_COUPONS = "coupons.change_coupon"


def may_change_coupons(user) -> bool:
    return user.has_perm(CHANGE_COUPONS)


def visible_coupons(principal) -> Q:
    return pool_scoped(principal)


def visible_jobs(model, principal) -> Q:
    """Jobs of every kind (pages, the Jobs page, the admin): those of the pools the
    principal may see; an upload not given a pool yet, to the user who uploaded it."""
    if is_unrestricted(principal):
        return Q()
    visible = pool_scoped(principal)
    if model._meta.get_field("pool").null:
        visible |= Q(pool__isnull=True, created_by=principal)
    return visible


def visible_events(principal) -> Q:
    return Q() if is_unrestricted(principal) else Q(pool__isnull=True) | Q(pool__in=pools_visible(principal))


def visible_customers(principal) -> Q:
    if is_unrestricted(principal):
        return Q()
    pools = pools_visible(principal)
    holds = Coupon.objects.filter(customer=OuterRef("pk"))
    history = CustomerEvent.objects.filter(customer=OuterRef("pk"))
    created_for = Customer.created_for.through.objects.filter(customer=OuterRef("pk"))
    introduced = Q(Exists(created_for.filter(group__in=principal_groups(principal))))
    if not is_api_key(principal):  # users see the pools of no group: and the customers of none
        introduced |= ~Q(Exists(created_for))
    return (
        Q(Exists(holds.filter(pool__in=pools)))
        | Q(Exists(history.filter(pool__in=pools)))
        | (~Q(Exists(holds)) & ~Q(Exists(history)) & introduced)
    )


def customer_created_by(principal, customer: Customer) -> None:
    """Record that a limited principal created ``customer`` (see ``created_for``)."""
    if not is_unrestricted(principal):
        customer.created_for.set([group for (group,) in principal_groups(principal)])


def customers_visible(principal) -> QuerySet[Customer]:
    return Customer.objects.filter(visible_customers(principal))


def customer_visible(principal, customer: Customer) -> bool:
    return is_unrestricted(principal) or customers_visible(principal).filter(pk=customer.pk).exists()
