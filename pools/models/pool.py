"""``CouponPool``: a pool, its source and pattern, the rules its form and the API check."""

from __future__ import annotations

import datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import (
    MaxValueValidator,
    MinValueValidator,
    RegexValidator,
    URLValidator,
)
from django.db import models

from couponsite import outbound
from couponsite.wording import counted

from .. import patterns
from . import lock
from .catalog import Product, Store
from .terms import (
    BULK_ONLY_FIELDS,
    GIFT_CARD_ONLY_FIELDS,
    MAX_PERIOD,
    PATTERN_SOURCES,
    REMOTE_ONLY_FIELDS,
    CouponTerms,
    CouponType,
    PeriodUnit,
    PoolSource,
    money_field,
    period_end,
    period_text,
    validate_currency,
)

# How messages about a remote pool's callback name the URL and the other side.
CALLBACK_WHAT = "pool's callback URL"
CALLBACK_PEER = "remote coupon system"


external_id_validator = RegexValidator(
    r"^[A-Za-z0-9._-]{6,24}$",
    "The external ID must be 6 to 24 characters long and use only letters, digits, "
    "dots, dashes and underscores.",
)


class WebURLField(models.URLField):
    """A URL field whose form assumes https:// for a URL typed without a scheme."""

    def formfield(self, **kwargs):
        return super().formfield(**{"assume_scheme": "https", **kwargs})


class CouponPool(models.Model):
    name = models.CharField(max_length=200)
    external_id = models.CharField(
        "external ID",
        max_length=24,
        unique=True,
        null=True,
        blank=True,
        validators=[external_id_validator],
        error_messages={"unique": "Another coupon pool already has this external ID."},
        help_text="Optional key for integrations: 6 to 24 letters, digits, dots, dashes "
        "or underscores.",
    )
    source = models.CharField(max_length=16, choices=PoolSource.choices)
    pattern = models.CharField(
        max_length=patterns.MAX_CODE_LENGTH,
        unique=True,
        null=True,
        blank=True,
        error_messages={
            "unique": "Another coupon pool already uses this pattern: each pool needs its own."
        },
        help_text="# digit, @ lowercase letter, ^ capital letter, * letter or digit, "
        "$ capital letter or digit; any other character is kept as written. "
        "Literals only (e.g. SPRINGCOUPON) give every customer the same code.",
    )
    excluded_characters = models.CharField(
        max_length=500,
        blank=True,
        help_text="Comma-separated, case-sensitive: O, 0, I, 1. List lowercase and capital "
        "letters separately.",
    )
    excluded_phrases = models.TextField(
        blank=True,
        help_text="One phrase per line; no code will contain one, whatever its case.",
    )
    callback_url = WebURLField(
        "callback URL",
        max_length=500,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"], message="Enter a valid http:// or https:// URL.")],
        help_text="Receives a POST for each coupon to issue and answers {\"code\": ...}.",
    )
    callback_api_key = models.CharField(
        "callback API key",
        max_length=200,
        blank=True,
        help_text="Sent as api_key in every request, so the remote system can check it.",
    )
    coupon_type = models.CharField("type", max_length=16, choices=CouponType.choices)
    value = money_field(
        help_text="The amount, the percentage, or the gift card's starting balance.",
    )
    currency = models.CharField(
        max_length=3,
        blank=True,
        validators=[validate_currency],
        help_text="ISO 4217 code. Only customers with this currency can get these gift cards.",
    )
    minimum_value = money_field(
        help_text="A gift card whose balance falls below this amount is voided.",
    )
    minimum_redemption_value = money_field(
        help_text="Each redemption must use at least this much of the gift card.",
    )
    purchase_minimum = money_field(
        help_text="Minimum basket value for using the coupon.",
    )
    expiration_period_count = models.PositiveIntegerField(
        "expires after",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(36500)],
    )
    expiration_period_unit = models.CharField(
        "unit", max_length=8, choices=PeriodUnit.choices, blank=True
    )
    stores = models.ManyToManyField(
        Store,
        blank=True,
        related_name="coupon_pools",
        help_text="Only valid in these stores; none selected: every store. "
        "Ctrl/Cmd-click to pick several.",
    )
    products = models.ManyToManyField(
        Product,
        blank=True,
        related_name="coupon_pools",
        help_text="Only for these products; none selected: every product.",
    )
    aggregated = models.BooleanField(
        "aggregated coupon",
        default=False,
        help_text="A customer always gets the same code from this pool.",
    )
    pass_template = models.CharField(
        max_length=200, blank=True, help_text="Wallet pass template for these coupons."
    )
    user_group = models.ForeignKey(
        Group,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="coupon_pools",
        help_text="Only members of this group (and superusers) can see and manage the pool.",
    )
    current_terms = models.ForeignKey(
        CouponTerms,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        help_text="The terms version new coupons of this pool get.",
    )
    generation_started_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set when the first bulk generation batch starts; source and pattern "
        "are locked from then on.",
    )
    former_patterns = models.JSONField(
        null=True,
        default=list,
        editable=False,
        help_text="The earlier patterns this generated pool issued codes with (a new "
        "pattern must not overlap them); NULL when not known: it held coupons before "
        "this history was kept.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False
    )

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(source__in=PATTERN_SOURCES) | models.Q(pattern__isnull=False),
                name="pool_pattern_for_generated_sources",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # --- derived -----------------------------------------------------------------

    @property
    def has_pattern(self) -> bool:
        return self.source in PATTERN_SOURCES

    @property
    def is_gift_card(self) -> bool:
        return self.coupon_type == CouponType.GIFT_CARD

    @property
    def source_locked(self) -> bool:
        """The source can no longer change (it holds coupons, or generation started)."""
        return self.lock_state().source_locked

    def compiled_pattern(self) -> patterns.Pattern | None:
        if not self.has_pattern or not self.pattern:
            return None
        phrases = self.excluded_phrases if self.source == PoolSource.BULK else None
        excluded = self.excluded_characters if self.source == PoolSource.BULK else None
        return patterns.parse_pattern(self.pattern, excluded, phrases)

    def expires_at(self, claimed_at: datetime.datetime) -> datetime.datetime | None:
        return period_end(claimed_at, self.expiration_period_count, self.expiration_period_unit)

    def terms_snapshot(self) -> dict:
        """The pool's current coupon-facing properties, as a terms version holds them."""
        return {
            **{name: getattr(self, name) for name in CouponTerms.SNAPSHOT_FIELDS},
            "store_ids": sorted(self.stores.values_list("pk", flat=True)),
            "product_ids": sorted(self.products.values_list("pk", flat=True)),
        }

    @property
    def expiration_period_display(self) -> str:
        return period_text(self.expiration_period_count, self.expiration_period_unit)

    # --- validation --------------------------------------------------------------

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}

        def refuse(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        if self.name is not None and not self.name.strip():
            refuse("name", "Enter a name.")
        self._clean_source_fields(refuse)
        self._clean_type_fields(refuse)
        self._clean_expiration(refuse)
        self._clean_locked_fields(refuse)
        if errors:
            raise ValidationError(errors)

    def _clean_source_fields(self, refuse) -> None:
        source_name = dict(PoolSource.choices).get(self.source, "").lower()
        if self.has_pattern:
            if not self.pattern:
                refuse("pattern", f"A {source_name} pool needs a pattern.")
        elif self.pattern:
            refuse("pattern", "Only generated and bulk generation pools have a pattern.")
        if self.source != PoolSource.BULK:
            for field in BULK_ONLY_FIELDS:
                if getattr(self, field).strip():
                    label = self._meta.get_field(field).verbose_name.capitalize()
                    refuse(field, f"{label} apply to bulk generation pools only.")
        if self.source == PoolSource.REMOTE:
            for field in REMOTE_ONLY_FIELDS:
                if not getattr(self, field):
                    label = self._meta.get_field(field).verbose_name
                    refuse(field, f"A remote pool needs a {label}.")
        else:
            for field in REMOTE_ONLY_FIELDS:
                if getattr(self, field):
                    label = self._meta.get_field(field).verbose_name
                    refuse(field, f"Only remote pools have a {label}.")
        if self.has_pattern and self.pattern:
            self._clean_pattern(refuse)
        if self.source == PoolSource.REMOTE and self.callback_url:
            self._clean_callback_url(refuse)

    def _clean_callback_url(self, refuse) -> None:
        """The outbound address guard, at save (it runs again at every call: a name may
        resolve elsewhere later). A host name that does not resolve is refused for a new
        or changed URL only, so a passing DNS failure does not block editing a pool."""
        try:
            self._meta.get_field("callback_url").run_validators(self.callback_url)
        except ValidationError:
            return  # the field's own error says it
        if self.__dict__.get("_accepted_callback_url") == self.callback_url:
            return  # checked already by this save (the form, then the service)
        try:
            outbound.check_url(self.callback_url, what=CALLBACK_WHAT, peer=CALLBACK_PEER)
        except outbound.OutboundError as error:
            if error.code == outbound.REFUSED_ADDRESS or self.callback_url != self._stored_callback_url():
                refuse("callback_url", str(error))
                return
        self._accepted_callback_url = self.callback_url

    def _stored_callback_url(self) -> str | None:
        if self.pk is None:
            return None
        return type(self).objects.filter(pk=self.pk).values_list("callback_url", flat=True).first()

    def _clean_pattern(self, refuse) -> None:
        bulk = self.source == PoolSource.BULK
        try:
            excluded = patterns.parse_excluded_characters(self.excluded_characters if bulk else "")
            phrases = patterns.parse_excluded_phrases(self.excluded_phrases if bulk else "")
        except patterns.PatternError as exc:
            refuse(exc.field, str(exc))
            return
        if bulk:
            self.excluded_characters = ",".join(dict.fromkeys(
                item.strip() for item in self.excluded_characters.split(",") if item.strip()
            ))
            self.excluded_phrases = "\n".join(phrases)
        try:
            compiled = patterns.parse_pattern(self.pattern, excluded, phrases)
        except patterns.PatternError as exc:
            refuse(exc.field, str(exc))
            return
        if bulk and compiled.placeholder_count < patterns.MIN_BULK_PLACEHOLDERS:
            refuse(
                "pattern",
                f"A bulk generation pattern needs at least {patterns.MIN_BULK_PLACEHOLDERS} "
                f"placeholders (# @ ^ * $); this one has {compiled.placeholder_count}.",
            )
        elif not compiled.is_generic and compiled.max_coupons < 1:
            refuse(
                "pattern",
                f"This pattern has only {counted(compiled.combinations, 'combination', 'combinations')}, so not even "
                "one coupon fits under the 1% guessing protection. Add placeholders.",
            )

    def _clean_type_fields(self, refuse) -> None:
        if not self.coupon_type:
            return
        if self.coupon_type == CouponType.FREE_SHIPPING:
            if self.value is not None:
                refuse("value", "Free shipping coupons have no value; leave it empty.")
        elif self.value is None:
            refuse("value", "Enter the value of the coupons.")
        elif self.coupon_type == CouponType.PERCENTAGE and self.value > 100:
            refuse("value", "A percentage cannot be more than 100.")
        if not self.is_gift_card:
            for field in GIFT_CARD_ONLY_FIELDS:
                if getattr(self, field) not in (None, ""):
                    label = self._meta.get_field(field).verbose_name.capitalize()
                    refuse(field, f"{label} applies to gift cards only.")
            return
        if self.value is not None:
            if self.minimum_value is not None and self.minimum_value >= self.value:
                refuse("minimum_value", "The minimum value must be below the card's value.")
            if (
                self.minimum_redemption_value is not None
                and self.minimum_redemption_value > self.value
            ):
                refuse(
                    "minimum_redemption_value",
                    "The minimum redemption value cannot be more than the card's value.",
                )

    def _clean_expiration(self, refuse) -> None:
        count, unit = self.expiration_period_count, self.expiration_period_unit
        if count and not unit:
            refuse("expiration_period_unit", "Choose days, weeks, months or years.")
        if unit and not count:
            refuse("expiration_period_count", "Enter how many, or clear the unit.")
        if count and unit in MAX_PERIOD and count > MAX_PERIOD[unit]:
            refuse(
                "expiration_period_count",
                f"At most {MAX_PERIOD[unit]:,} {PeriodUnit(unit).label}: a coupon cannot be valid "
                "for more than 100 years.",
            )

    def _clean_locked_fields(self, refuse) -> None:
        """The source lock (``lock``): the source once the pool holds a coupon, a bulk
        pool's pattern with it, a generated pool's pattern only while codes stay unique
        and the 1% rule holds (its replaced pattern joins ``former_patterns``)."""
        if not self.pk:
            return
        guarded = ("source", "pattern", "excluded_characters")
        stored = type(self).objects.filter(pk=self.pk).values(*guarded, "former_patterns").first()
        if stored is None:
            return
        changed = [field for field in guarded if getattr(self, field) != stored[field]]
        if not changed:
            return
        state = self.lock_state()
        if not state.source_locked:
            # It holds nothing, so no earlier pattern issued a code; but a claim of the
            # stored pattern may be landing right now (claims do not take the pool row).
            in_flight = stored["pattern"] if stored["source"] == PoolSource.GENERATED else None
            self.former_patterns = lock.with_former([], in_flight)
            return
        if "source" in changed:
            label = dict(PoolSource.choices).get(stored["source"], stored["source"])
            refuse("source", f"{state.source_reason()} It is {label}.")
            return
        if self.source == PoolSource.BULK:
            # Excluded characters too: they define which codes the pattern makes, and so
            # the pool's capacity under the 1% rule.
            for field in changed:
                label = self._meta.get_field(field).verbose_name
                when = "bulk generation has started" if state.generation_started else "the pool holds coupons"
                refuse(field, f"The {label} cannot change once {when} (it is {stored[field]!r}).")
        elif self.source == PoolSource.GENERATED and "pattern" in changed and self.pattern:
            try:
                new = self.compiled_pattern()
            except patterns.PatternError:
                return  # _clean_pattern says why
            refusal = lock.pattern_change_refusal(self, new, old=stored["pattern"], former=stored["former_patterns"])
            if refusal:
                refuse("pattern", refusal)
            else:
                self.former_patterns = lock.with_former(stored["former_patterns"], stored["pattern"])

    def lock_state(self) -> lock.PoolLock:
        """Whether the source and pattern may still change, as stored now (``lock``):
        computed once per instance (a request's form, clean and page share it); a save
        or ``refresh_from_db`` forgets it."""
        if "_lock_state" not in self.__dict__:
            self._lock_state = lock.pool_lock(self)
        return self._lock_state

    def forget_open_lock(self) -> None:
        """Ask again next time, unless it was locked: a lock never opens (coupons and a
        started generation stay), an open one may have closed meanwhile."""
        cached = self.__dict__.get("_lock_state")
        if cached is not None and not cached.source_locked:
            del self._lock_state

    def save(self, *args, **kwargs):
        self.__dict__.pop("_lock_state", None)
        super().save(*args, **kwargs)

    def refresh_from_db(self, *args, **kwargs):
        self.__dict__.pop("_lock_state", None)
        super().refresh_from_db(*args, **kwargs)

    def pattern_change(self) -> lock.PatternChange | None:
        """What a save changes for a generated pool holding coupons whose pattern was
        edited (the form's warning), or None when nothing noteworthy changes."""
        if not self.pk or self.source != PoolSource.GENERATED or not self.pattern:
            return None
        stored = type(self).objects.filter(pk=self.pk).values("source", "pattern").first()
        if stored is None or stored["source"] != PoolSource.GENERATED or stored["pattern"] == self.pattern:
            return None
        state = self.lock_state()
        if not state.holds_coupons:
            return None
        try:
            return lock.pattern_change(self.compiled_pattern(), state)
        except patterns.PatternError:
            return None
