"""Every lifecycle action from every status: allowed ones change the coupon and write
the right events; refused ones change nothing and say why."""

import datetime
import re
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from coupons import services
from coupons.actions import allowed_actions
from coupons.bulk import BULK_ACTIONS, bulk_apply
from coupons.models import Coupon, CouponStatus, CustomerEvent, GiftCardRedemption
from coupons.services import Actor, CouponActionError
from pools.models import PoolSource
from tests.factories import (
    BulkPoolFactory,
    CouponFactory,
    CustomerFactory,
    GiftCardPoolFactory,
    PoolFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db
S = CouponStatus
ALL_STATUSES = list(S)


def snapshot(coupon):
    coupon.refresh_from_db()
    return (coupon.status, coupon.customer_id, coupon.claimed_at, coupon.expires_at,
            coupon.usages, coupon.claims, coupon.balance)


def events(customer=None, **filters):
    queryset = CustomerEvent.objects.order_by("id")
    if customer is not None:
        queryset = queryset.filter(customer=customer)
    return list(queryset.filter(**filters).values_list("action", flat=True))


ACTIONS = {  # the service, the statuses it acts on, the status it leaves, its event
    "invalidate": (lambda c, a: services.coupon_invalidate(coupon=c, actor=a),
                   {S.UNASSIGNED, S.CLAIMED, S.PARTIALLY_REDEEMED}, S.INVALID),
    "unassign": (lambda c, a: services.coupon_unassign(coupon=c, actor=a), {S.CLAIMED}, S.UNASSIGNED),
    "redeem": (lambda c, a: services.coupon_redeem(coupon=c, actor=a), {S.CLAIMED}, S.REDEEMED),
    "unredeem": (lambda c, a: services.coupon_unredeem(coupon=c, actor=a), {S.REDEEMED}, S.CLAIMED),
    "expire": (lambda c, a: services.coupon_expire(coupon=c, actor=a), {S.CLAIMED, S.PARTIALLY_REDEEMED}, S.EXPIRED),
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: s.slug)
def test_action_from_every_status(action, status, actor):
    run, allowed, after = ACTIONS[action]
    coupon = CouponFactory(status=status)
    holder = coupon.customer
    before = snapshot(coupon)
    if status in allowed:
        run(coupon, actor)
        state = snapshot(coupon)
        assert state[0] == after
        usages = {"redeem": before[4] + 1, "unredeem": max(0, before[4] - 1)}.get(action, before[4])
        assert state[4] == usages
        assert state[1] == (None if action == "unassign" else before[1])  # only unassign lets go of the holder
        if holder is not None:
            assert events(holder) == [f"coupon_{action}"]
            assert CustomerEvent.objects.get().actor_label == actor.label
    else:
        with pytest.raises(CouponActionError) as error:
            run(coupon, actor)
        assert snapshot(coupon) == before
        assert f"this one is {status.slug.replace('_', ' ')}" in str(error.value)
        assert not CustomerEvent.objects.exists()


@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: s.slug)
def test_transfer_from_every_status(status, actor):
    coupon = CouponFactory(status=status)
    target = CustomerFactory(external_id="TARGET-1")
    before = snapshot(coupon)
    if status == S.CLAIMED:
        services.coupon_transfer(coupon=coupon, actor=actor, customer_id="TARGET-1")
        assert snapshot(coupon)[1] == target.pk
    else:
        with pytest.raises(CouponActionError, match="Only claimed coupons can be transferred"):
            services.coupon_transfer(coupon=coupon, actor=actor, customer_id="TARGET-1")
        assert snapshot(coupon) == before


class TestClaim:
    def test_uploaded_pool_issues_the_next_unassigned_coupon(self, actor):
        pool = PoolFactory(expiration_period_count=30, expiration_period_unit="day")
        first, second = CouponFactory(pool=pool), CouponFactory(pool=pool)
        customer = CustomerFactory()
        claimed = services.coupon_claim(pool=pool, customer=customer, actor=actor)
        assert claimed.pk == first.pk
        first.refresh_from_db()
        assert first.status == S.CLAIMED and first.customer == customer and first.claims == 1
        assert first.expires_at - first.claimed_at == datetime.timedelta(days=30)
        assert services.coupon_claim(pool=pool, customer=customer, actor=actor).pk == second.pk
        event = CustomerEvent.objects.filter(customer=customer).first()
        assert (event.action, event.actor_kind, event.actor_label) == ("coupon_claim", "user", "operator")
        assert event.data["code"] == first.code and event.pool_id == pool.pk

    def test_empty_pool_is_a_clear_error(self, actor):
        pool = PoolFactory(name="Empty pool")
        CouponFactory(pool=pool, status=S.INVALID)
        with pytest.raises(CouponActionError, match="“Empty pool” has no unassigned coupons left"):
            services.coupon_claim(pool=pool, customer=CustomerFactory(), actor=actor)
        assert not CustomerEvent.objects.exists()

    def test_bulk_pool_claims_like_uploaded(self, actor):
        pool = BulkPoolFactory()
        coupon = CouponFactory(pool=pool)
        assert services.coupon_claim(pool=pool, customer=CustomerFactory(), actor=actor).pk == coupon.pk

    def test_generated_pool_makes_a_new_code_from_its_pattern(self, actor):
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="GEN-####-^^")
        one = services.coupon_claim(pool=pool, customer=CustomerFactory(), actor=actor)
        two = services.coupon_claim(pool=pool, customer=CustomerFactory(), actor=actor)
        assert one.code != two.code
        assert pool.compiled_pattern().matches(one.code) and pool.compiled_pattern().matches(two.code)
        assert Coupon.objects.filter(pool=pool, status=S.CLAIMED).count() == 2

    def test_generic_code_goes_to_every_customer(self, actor):
        pool = PoolFactory(source=PoolSource.GENERATED, pattern="SPRINGCOUPON")
        codes = {services.coupon_claim(pool=pool, customer=CustomerFactory(), actor=actor).code for _ in range(3)}
        assert codes == {"SPRINGCOUPON"}
        assert Coupon.objects.filter(pool=pool).count() == 3

    def test_aggregated_pool_gives_the_same_code_again(self, actor):
        pool = PoolFactory(aggregated=True)
        CouponFactory(pool=pool), CouponFactory(pool=pool)
        customer, other = CustomerFactory(), CustomerFactory()
        first = services.coupon_claim(pool=pool, customer=customer, actor=actor)
        again = services.coupon_claim(pool=pool, customer=customer, actor=actor)
        assert again.pk == first.pk and again.claims == 2
        assert services.coupon_claim(pool=pool, customer=other, actor=actor).pk != first.pk
        assert events(customer) == ["coupon_claim", "coupon_claim"]

    def test_gift_card_currency_must_match_the_customer(self, actor):
        pool = GiftCardPoolFactory(currency="EUR")
        coupon = CouponFactory(pool=pool)
        with pytest.raises(CouponActionError, match="in EUR; customer C-USD has USD"):
            services.coupon_claim(pool=pool, customer=CustomerFactory(external_id="C-USD", currency="USD"), actor=actor)
        assert snapshot(coupon)[0] == S.UNASSIGNED


@pytest.fixture
def root(db):
    return Actor.of_user(UserFactory(username="root", is_superuser=True))


class TestTransitions:
    def test_invalidate_writes_an_event_only_for_a_held_coupon(self, actor):
        unassigned, claimed = CouponFactory(), CouponFactory(status=S.CLAIMED)
        services.coupon_invalidate(coupon=unassigned, actor=actor)
        services.coupon_invalidate(coupon=claimed, actor=actor)
        assert events() == ["coupon_invalidate"]
        assert CustomerEvent.objects.get().customer_id == claimed.customer_id

    def test_unassign_clears_customer_dates_and_claims(self, actor):
        coupon = CouponFactory(status=S.CLAIMED, expires_at=timezone.now(), claims=3)
        customer = coupon.customer
        services.coupon_unassign(coupon=coupon, actor=actor)
        assert snapshot(coupon)[:6] == (S.UNASSIGNED, None, None, None, 0, 0)
        assert events(customer) == ["coupon_unassign"]

    def test_transfer_by_email_writes_both_events(self, root):
        actor = root  # an email finds any customer only for a principal who sees everyone (tests/test_access.py)
        coupon = CouponFactory(status=S.CLAIMED)
        old = coupon.customer
        new = CustomerFactory(email="Anna@Example.com")
        services.coupon_transfer(coupon=coupon, actor=actor, email="anna@example.com")
        assert snapshot(coupon)[:2] == (S.CLAIMED, new.pk)
        assert events(old) == ["coupon_transfer"] and events(new) == ["coupon_receive"]
        assert CustomerEvent.objects.get(customer=old).data["to"] == new.external_id
        assert CustomerEvent.objects.get(customer=new).data["from"] == old.external_id

    @pytest.mark.parametrize(
        "target, message",
        [
            ({}, "Enter the target customer's ID or email"),
            ({"customer_id": "NOPE"}, "No customer has the ID NOPE"),
            ({"email": "nobody@example.com"}, "No customer has the email"),
            ({"customer_id": "T-1", "email": "other@example.com"}, "is not customer T-1.s"),
        ],
    )
    def test_transfer_target_problems_are_explained(self, target, message, actor):
        CustomerFactory(external_id="T-1", email="t1@example.com")
        coupon = CouponFactory(status=S.CLAIMED)
        before = snapshot(coupon)
        with pytest.raises(CouponActionError, match=message):
            services.coupon_transfer(coupon=coupon, actor=actor, **target)
        assert snapshot(coupon) == before and not CustomerEvent.objects.exists()

    def test_transfer_to_an_ambiguous_email_or_the_same_customer(self, root):
        actor = root  # an email finds any customer only for a principal who sees everyone (tests/test_access.py)
        CustomerFactory(email="shared@example.com"), CustomerFactory(email="shared@example.com")
        coupon = CouponFactory(status=S.CLAIMED)
        with pytest.raises(CouponActionError, match="Several customers have the email"):
            services.coupon_transfer(coupon=coupon, actor=actor, email="shared@example.com")
        with pytest.raises(CouponActionError, match="already belongs to customer"):
            services.coupon_transfer(coupon=coupon, actor=actor, customer_id=coupon.customer.external_id)

    def test_redeem_and_unredeem_count_usages(self, actor):
        coupon = CouponFactory(status=S.CLAIMED)
        services.coupon_redeem(coupon=coupon, actor=actor)
        assert snapshot(coupon)[0] == S.REDEEMED and coupon.usages == 1
        services.coupon_unredeem(coupon=coupon, actor=actor)
        assert snapshot(coupon)[0] == S.CLAIMED and coupon.usages == 0
        assert events(coupon.customer) == ["coupon_redeem", "coupon_unredeem"]

    def test_uploaded_coupon_redeemed_through_the_api_gets_assigned(self, actor):
        coupon = CouponFactory(pool=PoolFactory(source=PoolSource.UPLOADED))
        customer = CustomerFactory()
        services.coupon_redeem(coupon=coupon, actor=actor, customer=customer)
        assert snapshot(coupon)[:2] == (S.REDEEMED, customer.pk) and coupon.claimed_at is not None
        assert coupon.claims == 1  # it was claimed on the way: a claim event, then the redemption
        assert sorted(events(customer)) == ["coupon_claim", "coupon_redeem"]

    def test_unassigned_bulk_coupon_cannot_be_redeemed_even_with_a_customer(self, actor):
        coupon = CouponFactory(pool=BulkPoolFactory())
        with pytest.raises(CouponActionError, match="this one is unassigned"):
            services.coupon_redeem(coupon=coupon, actor=actor, customer=CustomerFactory())

    def test_amounts_are_for_gift_cards_only(self, actor):
        coupon = CouponFactory(status=S.CLAIMED)
        with pytest.raises(CouponActionError, match="Only gift cards are redeemed with an amount"):
            services.coupon_redeem(coupon=coupon, actor=actor, amount=Decimal("5"))
        assert snapshot(coupon)[0] == S.CLAIMED


class TestGiftCards:
    def make(self, **pool_fields):
        pool = GiftCardPoolFactory(**{"value": "100.00", **pool_fields})
        return CouponFactory(pool=pool, status=S.CLAIMED)

    def test_partial_then_full_redemption(self, actor):
        card = self.make()
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("30"))
        assert snapshot(card)[0] == S.PARTIALLY_REDEEMED and card.balance == Decimal("70.00")
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("70"))
        assert snapshot(card)[0] == S.REDEEMED and card.balance == 0 and card.usages == 2
        event = CustomerEvent.objects.filter(action="coupon_redeem").last()
        assert event.data == {"code": card.code, "amount": "70.00", "balance": "0.00"}

    def test_balance_never_goes_below_zero(self, actor):
        card = self.make()
        with pytest.raises(CouponActionError, match="balance is 100.00; 100.01 cannot be taken"):
            services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("100.01"))
        assert snapshot(card)[0] == S.CLAIMED and card.balance is None

    def test_minimum_redemption_value(self, actor):
        card = self.make(minimum_redemption_value="15.00")
        with pytest.raises(CouponActionError, match="at least 15.00 of this gift card"):
            services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("10"))
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("15"))
        assert snapshot(card)[6] == Decimal("85.00")

    def test_balance_below_the_minimum_value_voids_the_card(self, actor):
        card = self.make(minimum_value="1.00")
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("99.50"))
        assert snapshot(card)[0] == S.INVALID and card.balance == Decimal("0.50")

    def test_unredeem_restores_the_last_redemption(self, actor):
        card = self.make()
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("30"))
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("70"))
        services.coupon_unredeem(coupon=card, actor=actor)
        assert snapshot(card)[0] == S.PARTIALLY_REDEEMED and card.balance == Decimal("70.00")
        services.coupon_unredeem(coupon=card, actor=actor)
        assert snapshot(card)[0] == S.CLAIMED and card.balance == Decimal("100.00") and card.usages == 0
        assert GiftCardRedemption.objects.filter(reversed_at__isnull=True).count() == 0
        unredeem = CustomerEvent.objects.filter(action="coupon_unredeem").last()
        assert unredeem.data["amount"] == "30.00"

    def test_whole_balance_when_no_amount_is_given(self, actor):
        card = self.make()
        services.coupon_redeem(coupon=card, actor=actor)
        assert snapshot(card)[0] == S.REDEEMED and card.balance == 0


def action_names(coupon):
    return [action.name for action in allowed_actions(coupon)]


def test_allowed_actions_follow_the_status():
    assert action_names(CouponFactory(status=S.CLAIMED)) == ["redeem", "transfer", "unassign", "invalidate"]
    assert action_names(CouponFactory(status=S.UNASSIGNED)) == ["invalidate"]
    assert action_names(CouponFactory(status=S.REDEEMED)) == ["unredeem"]
    assert action_names(CouponFactory(status=S.EXPIRED)) == []
    gift = CouponFactory(pool=GiftCardPoolFactory(), status=S.PARTIALLY_REDEEMED)
    assert action_names(gift) == ["redeem", "unredeem", "invalidate"]


class TestReviewedEdges:
    def test_claim_refuses_an_old_coupon_in_another_currency(self):
        from coupons.propagation import pool_update

        pool = GiftCardPoolFactory(currency="EUR")
        old = CouponFactory(pool=pool)
        pool_update(pool=pool, actor=None, currency="USD")  # "update none": the old card stays EUR
        with pytest.raises(CouponActionError, match="in EUR; customer .* has USD"):
            services.coupon_claim(pool=pool, customer=CustomerFactory(currency="USD"), actor=services.Actor.system())
        assert snapshot(old)[0] == S.UNASSIGNED

    @pytest.mark.parametrize("action", ["redeem", "transfer"])
    def test_a_coupon_past_its_date_cannot_be_used_before_the_expiry_task_runs(self, action, actor):
        coupon = CouponFactory(status=S.CLAIMED, expires_at=timezone.now() - datetime.timedelta(days=3))
        CustomerFactory(external_id="NEW-1")
        with pytest.raises(CouponActionError, match="The coupon expired on"):
            if action == "redeem":
                services.coupon_redeem(coupon=coupon, actor=actor)
            else:
                services.coupon_transfer(coupon=coupon, actor=actor, customer_id="NEW-1")
        assert snapshot(coupon)[0] == S.CLAIMED

    def test_the_redemption_that_voided_a_gift_card_can_be_undone(self, actor):
        card = CouponFactory(pool=GiftCardPoolFactory(value="100.00", minimum_value="20.00"), status=S.CLAIMED)
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("90"))
        assert snapshot(card)[0] == S.INVALID
        assert "unredeem" in action_names(Coupon.objects.select_related("terms__effective").get(pk=card.pk))
        services.coupon_unredeem(coupon=card, actor=actor)
        assert snapshot(card)[0] == S.CLAIMED and card.balance == Decimal("100.00")

    def test_a_manually_invalidated_gift_card_stays_invalid(self, actor):
        card = CouponFactory(pool=GiftCardPoolFactory(value="100.00", minimum_value="20.00"), status=S.CLAIMED)
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("30"))
        services.coupon_unredeem(coupon=card, actor=actor)  # claimed again, nothing left to undo
        services.coupon_invalidate(coupon=card, actor=actor)
        with pytest.raises(CouponActionError, match="this one is invalid"):
            services.coupon_unredeem(coupon=card, actor=actor)
        assert snapshot(card)[0] == S.INVALID


class TestInvalidatingAPartlySpentGiftCard:
    """A compromised gift card is voided even after part of it was spent."""

    def spent_card(self, actor):
        card = CouponFactory(pool=GiftCardPoolFactory(value="100.00", minimum_value="20.00"), status=S.CLAIMED)
        services.coupon_redeem(coupon=card, actor=actor, amount=Decimal("30"))
        assert snapshot(card)[0] == S.PARTIALLY_REDEEMED
        return Coupon.objects.select_related("terms__effective").get(pk=card.pk)

    def test_it_is_invalidated_with_its_event_and_keeps_its_balance(self, actor):
        card = self.spent_card(actor)
        assert "invalidate" in action_names(card)
        services.coupon_invalidate(coupon=card, actor=actor)
        card.refresh_from_db()
        assert (card.status, card.balance) == (S.INVALID, Decimal("70.00"))
        assert events(card.customer) == ["coupon_redeem", "coupon_invalidate"]
        assert CustomerEvent.objects.filter(action="coupon_invalidate").get().data == {"code": card.code}

    def test_undoing_its_last_redemption_cannot_revive_it(self, actor):
        card = self.spent_card(actor)
        services.coupon_invalidate(coupon=card, actor=actor)
        voided = Coupon.objects.select_related("terms__effective").get(pk=card.pk)
        assert "unredeem" not in action_names(voided)
        with pytest.raises(CouponActionError, match="this one is invalid"):
            services.coupon_unredeem(coupon=voided, actor=actor)
        assert snapshot(card)[0] == S.INVALID and card.balance == Decimal("70.00")
        assert GiftCardRedemption.objects.get(coupon=card).reversed_at is None

    def test_the_bulk_invalidate_follows_the_same_rule(self, actor):
        card = self.spent_card(actor)
        redeemed = CouponFactory(pool=card.pool, status=S.REDEEMED)
        result = bulk_apply(action=BULK_ACTIONS["invalidate"], queryset=Coupon.objects.filter(pool=card.pool),
                            pool_id=card.pool_id, actor=actor)
        assert (result.applied, dict(result.skipped)) == (1, {"already redeemed": 1})
        assert snapshot(card)[0] == S.INVALID and snapshot(redeemed)[0] == S.REDEEMED
        assert events(card.customer) == ["coupon_redeem", "coupon_invalidate"]

    def test_the_row_menu_offers_it_and_the_dialog_does_it(self, actor, manager_client):
        card = self.spent_card(actor)
        tab = manager_client.get(reverse("coupons:pool_coupons", args=[card.pool_id])).content.decode()
        url = reverse("coupons:coupon_action", args=[card.pk, "invalidate"])
        assert f'data-row-action="invalidate" hx-get="{url}' in tab
        dialog = manager_client.get(url).content.decode()
        assert "Invalidate coupon" in dialog
        assert re.search(r'data-testid="voided-balance">Its remaining balance of <strong>70.00 \w*</strong> is voided', dialog)
        done = manager_client.post(url, {"next": "/pools/"}, follow=True)
        assert f"Coupon {card.code} invalidated." in done.content.decode()
        assert snapshot(card)[0] == S.INVALID
        assert events(card.customer) == ["coupon_redeem", "coupon_invalidate"]

    def test_a_refusal_names_every_status_that_could_be_invalidated(self, actor):
        with pytest.raises(CouponActionError) as error:
            services.coupon_invalidate(coupon=CouponFactory(status=S.REDEEMED), actor=actor)
        assert str(error.value) == (
            "Only unassigned, claimed and partially redeemed coupons can be invalidated; this one is redeemed.")


EXPECTED_EVENTS = {  # action -> events written for a coupon that has a customer
    "invalidate": ["coupon_invalidate"], "unassign": ["coupon_unassign"], "redeem": ["coupon_redeem"],
    "unredeem": ["coupon_unredeem"], "expire": ["coupon_expire"],
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("status", ALL_STATUSES, ids=lambda s: s.slug)
def test_allowed_actions_write_exactly_their_events_for_the_holder(action, status, actor):
    run, allowed, _ = ACTIONS[action]
    if status not in allowed:
        return  # the refusals are covered above
    coupon = CouponFactory(status=status)
    holder = coupon.customer_id
    run(coupon, actor)
    written = list(CustomerEvent.objects.values_list("action", "customer_id", "coupon_id", "actor_label"))
    expected = [] if holder is None else [(name, holder, coupon.pk, "operator") for name in EXPECTED_EVENTS[action]]
    assert written == expected
