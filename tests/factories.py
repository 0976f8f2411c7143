import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from pools.models import CouponPool, CouponType, PoolSource, Product, Store


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"manager{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("secret-pass-123")
    is_active = True

    @factory.post_generation
    def groups(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*extracted)

    @factory.post_generation
    def manager(self, create, extracted, **kwargs):
        """Loyalty managers by default; pass manager=False for a read-only user."""
        if create and extracted is not False:
            from couponsite.permissions import manager_permissions

            self.user_permissions.add(*manager_permissions())


class GroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Team {n}")


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store

    name = factory.Sequence(lambda n: f"Store {n}")
    external_id = factory.Sequence(lambda n: f"STORE-{n:04d}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")


class PoolFactory(factory.django.DjangoModelFactory):
    """Pools are made by the service, like in the product, so they get terms v1."""

    class Meta:
        model = CouponPool

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from pools.services import pool_create

        return pool_create(actor=None, **kwargs)

    name = factory.Sequence(lambda n: f"Pool {n}")
    source = PoolSource.UPLOADED
    coupon_type = CouponType.AMOUNT
    value = "10.00"


class BulkPoolFactory(PoolFactory):
    source = PoolSource.BULK
    pattern = factory.Sequence(lambda n: f"B{n}-$$$$$$$$")


class GiftCardPoolFactory(PoolFactory):
    coupon_type = CouponType.GIFT_CARD
    value = "100.00"
    currency = "EUR"


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "coupons.Customer"

    external_id = factory.Sequence(lambda n: f"CUST-{n:06d}")
    email = factory.LazyAttribute(lambda c: f"{c.external_id.lower()}@example.com")
    currency = "EUR"


class CouponFactory(factory.django.DjangoModelFactory):
    """A coupon in a given status; claimed-like statuses get a customer and dates."""

    class Meta:
        model = "coupons.Coupon"

    pool = factory.SubFactory(PoolFactory)
    terms = factory.LazyAttribute(lambda c: c.pool.current_terms)
    code = factory.Sequence(lambda n: f"CODE-{n:08d}")
    status = 1

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        import datetime

        from django.utils import timezone

        if kwargs.get("status", 1) != 1 and "customer" not in kwargs:
            kwargs["customer"] = CustomerFactory()
        if kwargs.get("customer") is not None:
            kwargs.setdefault("claimed_at", timezone.now() - datetime.timedelta(days=1))
            kwargs.setdefault("claims", 1)
        return super()._create(model_class, *args, **kwargs)


VIEW_PERMISSIONS = [("pools", "view_couponpool"), ("coupons", "view_coupon"), ("coupons", "view_customer")]


class ViewerFactory(UserFactory):
    """A read-only user: the view permissions of pools, coupons and customers, no other."""

    username = factory.Sequence(lambda n: f"viewer{n}")

    @factory.post_generation
    def manager(self, create, extracted, **kwargs):  # instead of the managers' permissions
        if create:
            from django.contrib.auth.models import Permission

            for app_label, codename in VIEW_PERMISSIONS:
                self.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
