"""Events of the customer history in words (``coupons.events_display``)."""

from decimal import Decimal

import pytest

from coupons import services
from coupons.events_display import event_details, event_label
from coupons.models import CustomerEvent, EventAction
from coupons.selectors import customer_events_visible
from coupons.services import Actor
from tests.factories import CouponFactory, CustomerFactory, GiftCardPoolFactory, UserFactory

A = EventAction


def event(action, **data):
    return CustomerEvent(action=action, data={"code": "C-1", **data})


@pytest.mark.parametrize("action, data, label, details", [
    (A.CLAIM, {}, "Claimed", ""),
    (A.CLAIM, {"again": True}, "Claimed", "Claimed again: this pool gives a customer the coupon they hold."),
    (A.CLAIM, {"on_redeem": True}, "Claimed", "Assigned when redeemed through the API."),
    (A.CLAIM, {"import": 12}, "Claimed", "Imported by import #12."),
    (A.REDEEM, {}, "Redeemed", ""),
    (A.REDEEM, {"amount": "30.00", "balance": "70.00"}, "Redeemed", "30.00 used, 70.00 left."),
    (A.UNREDEEM, {"amount": "30.00", "balance": "100.00"}, "Redemption undone", "30.00 given back, balance 100.00 again."),
    (A.TRANSFER, {"to": "BOB-2"}, "Transferred away", "To customer BOB-2."),
    (A.RECEIVE, {"from": "ANNA-1"}, "Received by transfer", "From customer ANNA-1."),
    (A.INVALIDATE, {}, "Invalidated", ""),
    (A.UNASSIGN, {}, "Unassigned", ""),
    (A.EXPIRE, {}, "Expired", ""),
    # a detail no rule knows (a newer version's, or written by hand) is still told, in words
    (A.INVALIDATE, {"by_support": True, "ticket_no": "T-9"}, "Invalidated", "By support, ticket no: T-9."),
    (A.CLAIM, {"again": True, "via_partner": False}, "Claimed",
     "Claimed again: this pool gives a customer the coupon they hold, via partner: no."),
    ("coupon_gift_wrap", {}, "Coupon gift wrap", ""),
])
def test_each_event_in_words(action, data, label, details):
    assert (event_label(event(action, **data)), event_details(event(action, **data))) == (label, details)


def test_a_given_currency_is_told_with_the_amounts():
    assert event_details(event(A.REDEEM, amount="5.00", balance="0.00"), currency="EUR") == "5.00 EUR used, 0.00 EUR left."


@pytest.mark.django_db
def test_amounts_carry_the_gift_card_s_currency_without_a_query_per_event(django_assert_num_queries):
    # Given a gift card in EUR, redeemed twice and the second redemption undone
    card = CouponFactory(pool=GiftCardPoolFactory(currency="EUR", value="100.00"), status=2)
    actor = Actor.system()
    services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("30"))
    services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("20"))
    services.coupon_unredeem(coupon=card, actor=actor)
    # When the history is read as a page reads it
    history = list(customer_events_visible(customer=card.customer, user=UserFactory(is_superuser=True)))
    # Then the words come without another query
    with django_assert_num_queries(0):
        told = [event_details(e) for e in history]
    assert told == ["20.00 EUR given back, balance 70.00 EUR again.", "20.00 EUR used, 50.00 EUR left.",
                    "30.00 EUR used, 70.00 EUR left."]


@pytest.mark.django_db
def test_without_the_terms_loaded_the_amounts_come_without_a_currency_and_no_query(django_assert_num_queries):
    card = CouponFactory(pool=GiftCardPoolFactory(currency="EUR"), status=2, customer=CustomerFactory())
    services.coupon_redeem(coupon=card, actor=Actor.system(), amount=Decimal("30"))
    loaded = CustomerEvent.objects.select_related("coupon").get()
    with django_assert_num_queries(0):
        assert event_details(loaded) == "30.00 used, 70.00 left."
