"""What the API reads and writes; validation of pool rules stays in the model (clean)."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from coupons.models import CouponStatus, JobStatus
from coupons.propagation import UpdateMethod
from pools.models import CouponPool, CouponType, PeriodUnit, PoolSource, Product, Store, validate_currency

MAX_BULK_ITEMS = 50_000


class SlugField(serializers.SlugRelatedField):
    """A relation by a text key; a NUL character is a validation error (PostgreSQL
    cannot even compare it)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("invalid")
        return super().to_internal_value(data)


class PoolSerializer(serializers.ModelSerializer):
    """A coupon pool. ``callback_api_key`` is write-only: it is never sent back."""

    type = serializers.ChoiceField(source="coupon_type", choices=CouponType.choices)
    source = serializers.ChoiceField(choices=PoolSource.choices)
    value = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True)
    expiration_period_unit = serializers.ChoiceField(choices=PeriodUnit.choices, required=False, allow_blank=True)
    stores = SlugField(
        many=True, required=False, slug_field="external_id", queryset=Store.objects.all(),
        help_text="Store external IDs the coupons are limited to.",
    )
    products = SlugField(
        many=True, required=False, slug_field="sku", queryset=Product.objects.all(),
        help_text="Product SKUs the coupons are limited to.",
    )
    user_group = SlugField(
        required=False, allow_null=True, slug_field="name", queryset=Group.objects.all(),
        help_text="The user group that sees the pool; a key limited to groups must name one of them.",
    )
    callback_api_key = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=255)

    class Meta:
        model = CouponPool
        fields = [
            "id", "external_id", "name", "source", "type", "value", "currency",
            "pattern", "excluded_characters", "excluded_phrases", "callback_url", "callback_api_key",
            "minimum_value", "minimum_redemption_value", "purchase_minimum",
            "expiration_period_count", "expiration_period_unit", "stores", "products", "aggregated",
            "pass_template", "user_group", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"external_id": {"validators": []}}  # the model's clean() says it better

    def validate_user_group(self, group):
        api_key = self.context["api_key"]
        allowed = list(api_key.groups.all())
        if allowed and group not in allowed:
            raise serializers.ValidationError("This API key may only use its own user groups.")
        return group


class PoolUpdateSerializer(PoolSerializer):
    update_method = serializers.ChoiceField(
        choices=[choice for choice, _ in UpdateMethod.choices], default=UpdateMethod.NONE, write_only=True,
        help_text="Which existing coupons get the new properties.",
    )
    update_matching = serializers.BooleanField(
        default=False, write_only=True,
        help_text="Only coupons whose properties still match the pool's before this update.",
    )

    class Meta(PoolSerializer.Meta):
        fields = [*PoolSerializer.Meta.fields, "update_method", "update_matching"]

    def get_fields(self):
        fields = super().get_fields()
        for field in fields.values():  # an update names only what changes
            field.required = False
        return fields


class CouponSerializer(serializers.Serializer):
    """A coupon. Fields declared one by one (not a ModelSerializer): claims serialize one
    per request, and building the fields from the model each time cost a millisecond."""

    id = serializers.IntegerField()
    code = serializers.CharField()
    pool = serializers.IntegerField(source="pool_id")
    pool_external_id = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()
    customer = serializers.CharField(source="customer.external_id", allow_null=True, default=None)
    claimed_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    usages = serializers.IntegerField()
    claims = serializers.IntegerField()
    type = serializers.SerializerMethodField()
    value = serializers.SerializerMethodField()
    balance = serializers.SerializerMethodField()

    def to_representation(self, coupon) -> dict:
        """The same fields as declared (the schema), built directly: cheaper per coupon."""
        return {
            "id": coupon.pk,
            "code": coupon.code,
            "pool": coupon.pool_id,
            "pool_external_id": self.get_pool_external_id(coupon),
            "status": self.get_status(coupon),
            "customer": coupon.customer.external_id if coupon.customer_id else None,
            "claimed_at": _iso(coupon.claimed_at),
            "expires_at": _iso(coupon.expires_at),
            "usages": coupon.usages,
            "claims": coupon.claims,
            "type": self.get_type(coupon),
            "value": self.get_value(coupon),
            "balance": self.get_balance(coupon),
        }

    def get_pool_external_id(self, coupon) -> str | None:
        return coupon.pool.external_id or None

    @extend_schema_field(serializers.ChoiceField(choices=[s.slug for s in CouponStatus]))
    def get_status(self, coupon) -> str:
        return CouponStatus(coupon.status).slug

    @extend_schema_field(serializers.ChoiceField(choices=CouponType.values))
    def get_type(self, coupon) -> str:
        return coupon.effective_terms.coupon_type

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True,
                                                  help_text="The amount, percentage or starting balance"))
    def get_value(self, coupon) -> str | None:
        value = coupon.effective_terms.value
        return None if value is None else str(value)

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True,
                                                  help_text="Gift cards: the balance left; else null"))
    def get_balance(self, coupon) -> str | None:
        balance = coupon.current_balance
        return None if balance is None else str(balance)


_DATETIME = serializers.DateTimeField()


def _iso(moment):
    return None if moment is None else _DATETIME.to_representation(moment)


class ClaimSerializer(serializers.Serializer):
    customer = serializers.CharField(max_length=128, help_text="The customer's ID; a new ID creates the customer.")
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254, help_text="Stored for a new customer.")
    currency = serializers.CharField(required=False, allow_blank=True, max_length=3,
                                     help_text="ISO 4217, stored for a new customer.")

    def validate_currency(self, value: str) -> str:
        return _currency(value)


def _currency(value: str) -> str:
    if value:
        value = value.upper()
        try:
            validate_currency(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0]) from None
    return value


class CustomerSerializer(serializers.Serializer):
    id = serializers.CharField(source="external_id", read_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, max_length=254)
    currency = serializers.CharField(required=False, allow_blank=True, max_length=3, min_length=3)
    created_at = serializers.DateTimeField(read_only=True)

    def validate_currency(self, value: str) -> str:
        return _currency(value)


class EventDataSerializer(serializers.Serializer):
    code = serializers.CharField(required=False, max_length=64)
    amount = serializers.DecimalField(required=False, max_digits=12, decimal_places=2, min_value=Decimal("0.01"))
    total = serializers.DecimalField(required=False, max_digits=12, decimal_places=2, min_value=Decimal("0"))
    coupons = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=100)
    currency = serializers.CharField(required=False, allow_blank=True, max_length=3, help_text="checkout: the basket's currency")
    store = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text="checkout: store external ID")
    products = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=1000,
                                     help_text="checkout: product SKUs in the basket")


class EventSerializer(serializers.Serializer):
    customer = serializers.CharField(max_length=128)
    action = serializers.ChoiceField(choices=["coupon_redeem", "checkout"])
    data = EventDataSerializer()

    def validate(self, attrs):
        data = attrs["data"]
        if attrs["action"] == "coupon_redeem" and not data.get("code"):
            raise serializers.ValidationError({"data": {"code": ["A coupon_redeem event needs data.code."]}})
        if attrs["action"] == "checkout":
            if data.get("total") is None:
                raise serializers.ValidationError({"data": {"total": ["A checkout event needs data.total."]}})
            if "amount" in data:
                raise serializers.ValidationError({"data": {"amount": ["Only coupon_redeem takes an amount."]}})
        return attrs


class EventResultSerializer(serializers.Serializer):
    code = serializers.CharField()
    result = serializers.ChoiceField(choices=["redeemed", "refused", "not_processed"])
    message = serializers.CharField(required=False)
    coupon = CouponSerializer(required=False)


class BulkItemSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64)
    customer = serializers.CharField(max_length=128, required=False)


class BulkRequestSerializer(serializers.Serializer):
    coupons = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=MAX_BULK_ITEMS,
        help_text='Codes ("ABC-123") or objects {"code", "customer"}; assign needs a customer for each.',
    )

    def validate_coupons(self, items):
        action = self.context["action"]
        cleaned = []
        for index, item in enumerate(items):
            if isinstance(item, str):
                item = {"code": item}
            if not isinstance(item, dict):
                raise serializers.ValidationError(f"Item {index}: give a code or an object with a code.")
            entry = BulkItemSerializer(data=item)
            if not entry.is_valid():
                field, errors = next(iter(entry.errors.items()))
                raise serializers.ValidationError(f"Item {index}: {field}: {errors[0]}")
            value = dict(entry.validated_data)
            value["code"] = value["code"].strip()
            if action == "assign" and not value.get("customer"):
                raise serializers.ValidationError(f"Item {index}: assign needs a customer for each coupon.")
            cleaned.append(value)
        return cleaned


class BulkStatusSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    pool = serializers.IntegerField(source="pool_id")
    action = serializers.CharField()
    status = serializers.ChoiceField(
        choices=[s for s in JobStatus.values if s != JobStatus.DRAFT],
        help_text="queued, running, done; interrupted (its worker stopped: a manager resumes it from the Jobs "
                  "page and it goes on where it stopped), failed (the message says why), cancelled.",
    )
    total = serializers.IntegerField()
    processed = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    message = serializers.CharField()
    attempts = serializers.IntegerField(help_text="Runs started: more than 1 after a retry or a resume.")
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    resumed_at = serializers.DateTimeField(allow_null=True, help_text="When it was last resumed, if ever.")
    finished_at = serializers.DateTimeField(allow_null=True)


class BulkErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    code = serializers.CharField()
    error_code = serializers.CharField()
    message = serializers.CharField()


class BasketSerializer(serializers.Serializer):
    customer = serializers.CharField(max_length=128, required=False, allow_blank=True)
    total = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))
    currency = serializers.CharField(max_length=3, required=False, allow_blank=True)
    store = serializers.CharField(max_length=64, required=False, allow_blank=True, help_text="Store external ID.")
    products = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=1000, help_text="Product SKUs."
    )


class ValidationReasonSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ValidationResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    reasons = ValidationReasonSerializer(many=True)
    discount = serializers.DecimalField(max_digits=12, decimal_places=2)
    free_shipping = serializers.BooleanField()
    coupon = CouponSerializer()


