from urllib.parse import quote

import django_tables2 as tables
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from couponsite.tables import BaseTable
from pools.models import CouponPool, PoolSource
from pools.tables import PoolTable

from . import selectors
from .actions import allowed_actions
from .models import Coupon, CouponStatus, Customer

STATUS_BADGES = {
    CouponStatus.UNASSIGNED: "text-bg-light border",
    CouponStatus.CLAIMED: "text-bg-primary",
    CouponStatus.PARTIALLY_REDEEMED: "text-bg-info",
    CouponStatus.REDEEMED: "text-bg-success",
    CouponStatus.EXPIRED: "text-bg-warning",
    CouponStatus.INVALID: "text-bg-secondary",
}


def status_badge(status: int):
    return format_html('<span class="badge {}">{}</span>', STATUS_BADGES[status], CouponStatus(status).label)


def coupon_value(coupon: Coupon) -> str:
    """A coupon's value as its terms read it (``CouponTerms.value_display``, a gift card's
    with its balance); one without a value by its type ("Free shipping")."""
    terms = coupon.effective_terms
    return terms.value_display(balance=coupon.current_balance) or terms.get_coupon_type_display()


def local(value, fmt: str) -> str:
    return date_format(timezone.localtime(value), fmt) if value else ""


def row_menu(coupon: Coupon, next_url: str):
    """The hamburger menu with the actions the coupon's status allows.

    Rendered in Python, not with a template per row: on a 50-row page that is the
    difference between ~10 and ~50 ms.
    """
    actions = allowed_actions(coupon)
    if not actions:
        return ""
    items = format_html_join(
        "",
        '<li><button type="button" class="dropdown-item" data-row-action="{}" hx-get="{}?next={}" '
        'hx-target="#dialog-content" data-bs-toggle="modal" data-bs-target="#dialog">{}</button></li>',
        ((action.name, reverse("coupons:coupon_action", args=[coupon.pk, action.name]), quote(next_url, safe=""),
          action.label) for action in actions),
    )
    return format_html(
        '<div class="dropdown text-end"><button class="btn btn-sm btn-outline-secondary" type="button" '
        'data-bs-toggle="dropdown" aria-expanded="false" aria-label="Actions for {}">'
        '<i class="bi bi-list" aria-hidden="true"></i></button>'
        '<ul class="dropdown-menu dropdown-menu-end">{}</ul></div>',
        coupon.code, items,
    )


class CouponTable(BaseTable):
    selected = tables.CheckBoxColumn(
        accessor="pk",
        attrs={
            "th__input": {"id": "select-page", "aria-label": "Select all coupons on this page"},
            "td__input": {"class": "form-check-input row-check", "aria-label": "Select coupon"},
        },
    )
    # Codes and times stay on one line (a code broken at its dashes reads as two); the
    # table scrolls sideways instead (bootstrap5-responsive).
    code = tables.Column(attrs={"td": {"class": "font-monospace text-nowrap"}})
    customer = tables.Column(empty_values=(None,), default="")
    claimed_at = tables.Column(verbose_name="Claimed at", empty_values=(), attrs={"td": {"class": "text-nowrap"}})
    expires_at = tables.Column(verbose_name="Expiration date", empty_values=(), attrs={"td": {"class": "text-nowrap"}})
    value = tables.Column(verbose_name="Value / balance", empty_values=(), accessor="pk")
    status = tables.Column()
    usages = tables.Column(attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}})
    claims = tables.Column(attrs={"td": {"class": "text-end"}, "th": {"class": "text-end"}})
    actions = tables.Column(verbose_name="", orderable=False, empty_values=(), accessor="pk")

    class Meta(BaseTable.Meta):
        model = Coupon
        fields = ("selected", "code", "customer", "claimed_at", "expires_at", "value", "status", "usages", "claims", "actions")
        orderable = False
        empty_text = "No coupons match."

    def render_code(self, record: Coupon):
        # format_html, not linkify: a quarter of the cost on the 50 rows of the Coupons tab.
        return format_html('<a href="{}">{}</a>', reverse("coupons:coupon_detail", args=[record.pk]), record.code)

    def render_claimed_at(self, record: Coupon):
        return local(record.claimed_at, "Y-m-d H:i")

    def render_expires_at(self, record: Coupon):
        return local(record.expires_at, "Y-m-d")

    def render_actions(self, record: Coupon):
        return row_menu(record, self.request.get_full_path())

    def render_customer(self, record: Coupon):
        return format_html(
            '<a href="{}">{}</a>', reverse("coupons:customer", args=[record.customer_id]), record.customer.external_id
        )

    def render_value(self, record: Coupon):
        return coupon_value(record)

    def render_status(self, record: Coupon):
        return status_badge(record.status)


class CustomerCouponTable(BaseTable):
    code = tables.Column(attrs={"td": {"class": "text-nowrap"}})  # the link is monospace (_coupon_link.html)
    pool = tables.Column(linkify=lambda record: reverse("coupons:pool_coupons", args=[record.pool_id]))
    claimed_at = tables.Column(verbose_name="Claimed at", empty_values=())
    expires_at = tables.Column(verbose_name="Expiration date", empty_values=())
    value = tables.Column(verbose_name="Value / balance", empty_values=(), accessor="pk")
    status = tables.Column()
    usages = tables.Column()
    claims = tables.Column()

    def render_code(self, record):
        return render_to_string("coupons/_coupon_link.html", {"coupon": record})

    def render_claimed_at(self, record):
        return local(record.claimed_at, "Y-m-d H:i")

    def render_expires_at(self, record):
        return local(record.expires_at, "Y-m-d")

    class Meta(BaseTable.Meta):
        model = Coupon
        fields = ("code", "pool", "claimed_at", "expires_at", "value", "status", "usages", "claims")
        orderable = False
        empty_text = "This customer holds no coupons."

    def render_value(self, record):
        return coupon_value(record)

    def render_status(self, record):
        return status_badge(record.status)


class CustomerTable(BaseTable):
    external_id = tables.Column(verbose_name="Customer ID", linkify=("coupons:customer", {"pk": tables.A("pk")}))
    email = tables.Column()
    currency = tables.Column()
    created_at = tables.Column(verbose_name="Since")

    class Meta(BaseTable.Meta):
        model = Customer
        fields = ("external_id", "email", "currency", "created_at")
        orderable = False
        empty_text = "No customers match."

    def render_created_at(self, value):
        return local(value, "Y-m-d")


class PoolStockTable(PoolTable):
    """The pool list with each pool's stock (``selectors.pools_stock``): counted for the
    shown page only, in one query, exactly up to ``selectors.LIST_STOCK_EXACT_LIMIT`` and
    estimated beyond ("about")."""

    stock = tables.Column(verbose_name="Stock", empty_values=(), orderable=False, accessor="pk",
                          attrs={"td": {"class": "text-end text-nowrap"}, "th": {"class": "text-end"}})

    class Meta(PoolTable.Meta):
        sequence = ("name", "external_id", "source", "coupon_type", "value", "stock", "user_group")

    _page_stock: dict | None = None

    def stock_of(self, record: CouponPool) -> selectors.Stock | None:
        if self._page_stock is None:  # the whole page's at the first row
            self._page_stock = selectors.pools_stock([row.record for row in self.paginated_rows])
        return self._page_stock.get(record.pk)

    def render_stock(self, record: CouponPool):
        stock = self.stock_of(record)
        if stock is None:
            made = "made at each claim" if record.source == PoolSource.GENERATED else "from the remote system"
            return format_html('<span class="text-body-secondary small">{}</span>', made)
        return format_html('<span data-testid="stock"{}>{}</span> <span class="text-body-secondary small">unassigned</span>',
                           "" if stock.count else mark_safe(' class="text-danger fw-semibold"'), stock)
