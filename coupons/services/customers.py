"""Finding customers (by ID and/or email, within what a principal may see) and creating
them on first sight (SPEC 7)."""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from ..access import customer_visible, visible_customers
from ..models import Customer
from .rules import CouponActionError


def customer_find(*, external_id: str = "", email: str = "", principal=None) -> Customer:
    """The customer named by ID and/or email; both given must name the same customer.

    For a ``principal`` limited to groups, an email finds only a customer it may see
    (``coupons.access``), and an ID with an email is confirmed only for one it may see:
    another group's customers' emails are not told, not even as "it matches".
    """
    external_id, email = (external_id or "").strip(), (email or "").strip()
    if not external_id and not email:
        raise CouponActionError("Enter the target customer's ID or email.", code="customer_required")
    if external_id:
        customer = Customer.objects.filter(external_id=external_id).first()
        if customer is None:
            raise CouponActionError(f"No customer has the ID {external_id}.", code="customer_not_found")
        if email and (customer.email.lower() != email.lower()
                      or (principal is not None and not customer_visible(principal, customer))):
            raise CouponActionError(
                f"The email {email} is not customer {external_id}'s, or cannot be checked for this customer; "
                "enter the customer ID alone.", code="customer_mismatch",
            )
        return customer
    found = Customer.objects.filter(email__iexact=email)
    if principal is not None:
        found = found.filter(visible_customers(principal))
    matches = list(found[:2])
    if not matches:
        raise CouponActionError(f"No customer has the email {email}.", code="customer_not_found")
    if len(matches) > 1:
        raise CouponActionError(
            f"Several customers have the email {email}; enter the customer ID instead.",
            code="customer_ambiguous",
        )
    return matches[0]


def customer_get_or_create(external_id: str, *, email: str = "", currency: str = "") -> Customer:
    """The customer with this ID, created if new (SPEC 7: a claim or event for an ID not
    seen before creates that customer).

    One statement when the customer is new (INSERT ... ON CONFLICT DO NOTHING), one more
    when it exists: no savepoint, and a parallel request creating the same customer is
    simply found.
    """
    external_id = (external_id or "").strip()
    if not external_id:
        raise CouponActionError("The customer ID is empty.", code="customer_required")
    email, currency = email or "", (currency or "").upper()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO coupons_customer (external_id, email, currency, created_at) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (external_id) DO NOTHING RETURNING id",
            [external_id, email, currency, connection.ops.adapt_datetimefield_value(timezone.now())],
        )
        row = cursor.fetchone()
    if row is not None:
        return Customer(pk=row[0], external_id=external_id, email=email, currency=currency)
    return Customer.objects.get(external_id=external_id)
