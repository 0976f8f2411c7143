"""The source lock (pools/models/lock.py): a pool holding coupons keeps its source; a
generated pool's pattern changes after claims only while codes stay unique and the 1%
rule holds. Through the service, the pool form, the API and the admin: one rule."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from api.services import api_key_create
from coupons.models import Coupon, CouponStatus
from coupons.propagation import pool_update
from coupons.services import Actor, coupon_claim
from pools.models import CouponPool, PoolSource
from tests.factories import BulkPoolFactory, CouponFactory, CustomerFactory, PoolFactory

pytestmark = pytest.mark.django_db
S = CouponStatus

FORM = {"name": "Welcome", "coupon_type": "amount", "value": "10.00"}


def uploaded_pool_with_31_codes():
    pool = PoolFactory(name="Welcome", source=PoolSource.UPLOADED)
    for n in range(31):
        CouponFactory(pool=pool, code=f"UPLOADED-{n:02d}")
    return pool


def generated_pool(pattern="GEN-#####", claimed=3):
    pool = PoolFactory(name="Welcome", source=PoolSource.GENERATED, pattern=pattern)
    customer = CustomerFactory()
    codes = [coupon_claim(pool=pool, customer=customer, actor=Actor.system()).code for _ in range(claimed)]
    return CouponPool.objects.get(pk=pool.pk), codes


class TestSourceLockInTheService:
    def test_an_uploaded_pool_with_31_codes_keeps_its_source(self):
        # Given an uploaded pool holding 31 unassigned codes
        pool = uploaded_pool_with_31_codes()
        # When it is switched to Generated with a new pattern
        with pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, source=PoolSource.GENERATED, pattern="NEW-#####")
        # Then the save is refused with the reason, and nothing changed
        assert error.value.message_dict["source"] == [
            "This pool holds 31 coupons; its source can no longer change. It is Uploaded."]
        pool = CouponPool.objects.get(pk=pool.pk)
        assert (pool.source, pool.pattern) == (PoolSource.UPLOADED, None)
        # And the next claim still gives one of the uploaded codes
        coupon = coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
        assert coupon.code.startswith("UPLOADED-")

    def test_an_empty_pool_may_change_its_source(self):
        pool = PoolFactory(source=PoolSource.UPLOADED)
        pool, _ = pool_update(pool=pool, actor=None, source=PoolSource.GENERATED, pattern="FREE-#####")
        assert CouponPool.objects.get(pk=pool.pk).source == PoolSource.GENERATED

    def test_other_fields_still_change_on_a_locked_pool(self):
        pool = uploaded_pool_with_31_codes()
        pool, _ = pool_update(pool=pool, actor=None, name="Renamed", source=PoolSource.UPLOADED)
        assert CouponPool.objects.get(pk=pool.pk).name == "Renamed"

    def test_a_bulk_pool_holding_coupons_keeps_pattern_and_excluded_characters(self):
        pool = BulkPoolFactory(pattern="BLK-$$$$$$")
        CouponFactory(pool=pool, code="BLK-AAAAAA")
        with pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, pattern="BLK-$$$$$$$", excluded_characters="O")
        assert "The pattern cannot change once the pool holds coupons (it is 'BLK-$$$$$$')." in error.value.message_dict["pattern"]
        assert "excluded_characters" in error.value.message_dict


class TestGeneratedPatternChange:
    def test_allowed_when_no_issued_code_fits_and_the_1_percent_rule_holds(self):
        pool, codes = generated_pool()
        pool, _ = pool_update(pool=pool, actor=None, pattern="GEN2-######")
        assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN2-######"
        assert sorted(Coupon.objects.filter(pool=pool).values_list("code", flat=True)) == sorted(codes)
        new = coupon_claim(pool=pool, customer=CustomerFactory(), actor=Actor.system())
        assert new.code.startswith("GEN2-") and len(new.code) == 11

    def test_refused_when_issued_codes_fit_the_new_pattern(self):
        pool, codes = generated_pool(claimed=1)
        with pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, pattern="GEN-####$")  # $ includes the digits
        message = error.value.message_dict["pattern"][0]
        assert f"could be the same as codes this pool issued already (such as {codes[0]})" in message
        assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN-#####"

    def test_refused_when_the_new_pattern_is_the_generic_code_of_an_issued_one(self):
        pool, codes = generated_pool(claimed=1)
        with pytest.raises(ValidationError, match="could be the same as codes"):
            pool_update(pool=pool, actor=None, pattern=codes[0])

    def test_refused_when_the_issued_coupons_break_the_1_percent_rule_of_the_new_pattern(self):
        pool, _ = generated_pool(claimed=10)
        with pytest.raises(ValidationError) as error:
            pool_update(pool=pool, actor=None, pattern="SMALL-###")  # 1,000 combinations: at most 10
        assert error.value.message_dict["pattern"] == [
            "This pool holds 10 coupons; the new pattern allows at most 10 (1% of its combinations, "
            "against guessing). Add placeholders."]
        pool, _ = pool_update(pool=CouponPool.objects.get(pk=pool.pk), actor=None, pattern="SMALL-####")
        assert pool.pattern == "SMALL-####"

    def test_the_source_of_a_generated_pool_with_claims_is_locked(self):
        pool, _ = generated_pool(claimed=1)
        with pytest.raises(ValidationError, match="This pool holds 1 coupon; its source can no longer change"):
            pool_update(pool=pool, actor=None, source=PoolSource.UPLOADED, pattern=None)


class TestPoolForm:
    def test_the_form_shows_the_locked_source_and_keeps_it_on_save(self, manager_client):
        pool = uploaded_pool_with_31_codes()
        url = reverse("pools:edit", args=[pool.pk])
        form = manager_client.get(url).context["form"]
        assert form.fields["source"].disabled and form.fields["pattern"].disabled
        page = manager_client.get(url).content.decode()
        assert "This pool holds 31 coupons; its source can no longer change." in page
        assert 'id="locked_source" name="source" value="uploaded"' in page
        # A posted source and pattern (a hand-made request) are ignored; the rest is saved
        response = manager_client.post(url, {**FORM, "name": "Renamed", "source": "generated", "pattern": "NEW-#####"})
        assert response.status_code == 302
        pool = CouponPool.objects.get(pk=pool.pk)
        assert (pool.source, pool.pattern, pool.name) == (PoolSource.UPLOADED, None, "Renamed")
        assert Coupon.objects.filter(pool=pool, status=S.UNASSIGNED).count() == 31

    def test_a_pool_without_coupons_offers_every_source(self, manager_client):
        pool = PoolFactory()
        form = manager_client.get(reverse("pools:edit", args=[pool.pk])).context["form"]
        assert not form.fields["source"].disabled and not form.fields["pattern"].disabled
        assert "confirm_pattern_change" not in form.fields

    def test_a_generated_pattern_change_warns_and_waits_for_the_confirmation(self, manager_client):
        # Given a generated pool that issued 3 codes
        pool, codes = generated_pool()
        url = reverse("pools:edit", args=[pool.pk])
        data = {**FORM, "source": "generated", "pattern": "GEN2-######", "update_method": "update_none"}
        page = manager_client.get(url).content.decode()
        assert "This pool issued 3 coupons. A new pattern must not make codes like theirs" in page
        # When the new pattern is sent without the confirmation, nothing is saved and the page says what changes
        response = manager_client.post(url, data)
        assert response.status_code == 200
        html = response.content.decode()
        assert "New claims will get codes like GEN2-" in html and "the 3 coupons this pool issued already keep their codes" in html
        assert response.context["form"].errors["confirm_pattern_change"]
        assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN-#####"
        # Then with the box ticked it is saved, and the message repeats what changed
        response = manager_client.post(url, {**data, "confirm_pattern_change": "on"}, follow=True)
        assert "New claims will get codes like GEN2-" in response.content.decode()
        assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN2-######"
        assert sorted(Coupon.objects.filter(pool=pool).values_list("code", flat=True)) == sorted(codes)

    def test_a_refused_generated_pattern_shows_the_error_not_the_confirmation(self, manager_client):
        pool, codes = generated_pool(claimed=1)
        data = {**FORM, "source": "generated", "pattern": "GEN-####$", "confirm_pattern_change": "on"}
        response = manager_client.post(reverse("pools:edit", args=[pool.pk]), data)
        form = response.context["form"]
        assert "could be the same as codes" in form.errors["pattern"][0] and not form.pattern_warning
        assert CouponPool.objects.get(pk=pool.pk).pattern == "GEN-#####"


def test_the_api_refuses_the_same_way():
    pool = uploaded_pool_with_31_codes()
    CouponPool.objects.filter(pk=pool.pk).update(external_id="WELCOME-31")
    _, key = api_key_create(name="Shop")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    response = api.post("/api/v1/coupon-pools/WELCOME-31/update",
                        {"source": "generated", "pattern": "NEW-#####"}, format="json")
    assert response.status_code == 400, response.json()
    assert "its source can no longer change" in str(response.json()["error"])
    assert CouponPool.objects.get(pk=pool.pk).source == PoolSource.UPLOADED


def test_the_admin_refuses_the_same_way(admin_client_):
    pool = uploaded_pool_with_31_codes()
    response = admin_client_.post(reverse("admin:pools_couponpool_change", args=[pool.pk]), {
        "name": pool.name, "source": "generated", "pattern": "NEW-#####", "coupon_type": "amount", "value": "10.00",
    })
    assert response.status_code == 200
    assert "This pool holds 31 coupons; its source can no longer change." in response.content.decode()
    assert CouponPool.objects.get(pk=pool.pk).source == PoolSource.UPLOADED
