"""Finding customers (by ID and/or email, within what a principal may see), creating
them on first sight (SPEC 7), and creating or editing one on purpose (the API's PUT and
the Management UI's customer form): their fields' rules are here, once."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from pools.models import validate_currency

from ..access import customer_created_by, customer_visible, visible_customers
from ..models import Customer
from .rules import CouponActionError, check_currency_kept

ID_MAX = Customer._meta.get_field("external_id").max_length
EMAIL_MAX = Customer._meta.get_field("email").max_length


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


# --- creating and editing on purpose -------------------------------------------------------


def customer_clean(*, external_id: str | None = None, email: str | None = None,
                   currency: str | None = None) -> dict:
    """The given fields, normalised (ID trimmed, email trimmed, currency in capitals), or a
    ``ValidationError`` naming each bad field; a field left ``None`` is not checked."""
    cleaned, errors = {}, {}
    if external_id is not None:
        cleaned["external_id"] = external_id = external_id.strip()
        if not external_id or len(external_id) > ID_MAX:
            errors["external_id"] = f"A customer ID has 1 to {ID_MAX} characters."
    if email is not None:
        cleaned["email"] = email = email.strip()
        if len(email) > EMAIL_MAX:
            errors["email"] = f"An email has at most {EMAIL_MAX} characters."
        elif email:
            try:
                validate_email(email)
            except ValidationError:
                errors["email"] = "Enter a valid email address."
    if currency is not None:
        cleaned["currency"] = currency = currency.strip().upper()
        if currency:
            try:
                validate_currency(currency)
            except ValidationError as exc:
                errors["currency"] = exc.messages[0]
    if errors:
        raise ValidationError(errors)
    return cleaned


def customer_id_unavailable(external_id: str) -> CouponActionError:
    """The refusal of an ID that another group's customer holds, the same in the customer
    form and the API's PUT. IDs are unique across groups, so that ID can be neither
    created nor updated by this principal; the words confirm no customer, and tell
    nothing of them (``coupons.access``)."""
    return CouponActionError(f"The customer ID {external_id} cannot be used; choose another.",
                             code="customer_id_unavailable")


def customer_create(*, principal, external_id: str, email: str = "", currency: str = "") -> Customer:
    """A new customer; a customer ID already taken is refused, so nothing of the existing
    customer changes: "exists already" (``customer_exists``) when the principal may see
    that customer, else ``customer_id_unavailable``. A limited principal's groups see the
    new customer before it holds a coupon (``coupons.access.customer_created_by``)."""
    fields = customer_clean(external_id=external_id, email=email, currency=currency)
    customer = Customer(**fields)
    with transaction.atomic():
        try:
            with transaction.atomic():
                customer.save()
        except IntegrityError:
            taken = Customer.objects.filter(external_id=fields["external_id"]).first()
            if taken is not None and not customer_visible(principal, taken):
                raise customer_id_unavailable(fields["external_id"]) from None
            raise CouponActionError(
                f"A customer with the ID {fields['external_id']} exists already.", code="customer_exists"
            ) from None
        customer_created_by(principal, customer)
    return customer


def customer_update(*, principal, customer: Customer, email: str | None = None,
                    currency: str | None = None) -> Customer:
    """Change a customer's email and/or currency (``None``: unchanged). A customer the
    principal may not see is "not found"; one holding gift cards of a currency keeps it
    (``rules.check_currency_kept``)."""
    fields = customer_clean(email=email, currency=currency)
    with transaction.atomic():
        locked = Customer.objects.select_for_update().filter(pk=customer.pk).first()
        if locked is None or not customer_visible(principal, locked):
            raise CouponActionError(f"No customer has the ID {customer.external_id}.", code="customer_not_found")
        if "currency" in fields:
            check_currency_kept(locked, fields["currency"])
        for name, value in fields.items():
            setattr(locked, name, value)
        if fields:
            locked.save(update_fields=list(fields))
    return locked


def customer_put(*, principal, external_id: str, email: str | None = None,
                 currency: str | None = None) -> tuple[Customer, bool]:
    """Create the customer, or update one the principal may see (the API's PUT). An ID
    another group's customer holds is refused as the customer form refuses it
    (``customer_id_unavailable``), with nothing of that customer told or changed.
    Returns (customer, created)."""
    external_id = customer_clean(external_id=external_id)["external_id"]
    existing = Customer.objects.filter(external_id=external_id).first()
    if existing is None:
        try:
            return customer_create(principal=principal, external_id=external_id, email=email or "",
                                   currency=currency or ""), True
        except CouponActionError as exc:
            if exc.code != "customer_exists":
                raise
            # Created by a parallel request meanwhile: update it like one found.
            existing = Customer.objects.get(external_id=external_id)
    elif not customer_visible(principal, existing):
        raise customer_id_unavailable(external_id)
    return customer_update(principal=principal, customer=existing, email=email, currency=currency), False
