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
    class Meta:
        model = CouponPool

    name = factory.Sequence(lambda n: f"Pool {n}")
    source = PoolSource.UPLOADED
    coupon_type = CouponType.AMOUNT
    value = "10.00"


class BulkPoolFactory(PoolFactory):
    source = PoolSource.BULK
    pattern = factory.Sequence(lambda n: f"B{n}-$$$$$$$$")
