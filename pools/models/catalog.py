"""The store and product catalogs and the module settings."""

from __future__ import annotations

from django.db import models


class Store(models.Model):
    """An offline store a coupon can be restricted to."""

    name = models.CharField(max_length=200)
    external_id = models.CharField("external ID", max_length=64, unique=True, null=True, blank=True)

    # Said of a store without one, in its label and in the terms block (pools/_catalog.html).
    NO_EXTERNAL_ID = "no external ID"

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def label(self) -> str:
        """The name and the external ID the API names the store by (a basket's ``store``)."""
        return f"{self.name} ({self.external_id or self.NO_EXTERNAL_ID})"


class Product(models.Model):
    """A catalog product a coupon can be restricted to."""

    name = models.CharField(max_length=200)
    sku = models.CharField("SKU", max_length=64, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        """The name and the SKU the API names the product by (a basket's ``products``)."""
        return f"{self.name} ({self.sku})"


class ModuleSettings(models.Model):
    """Installation-wide coupon settings: exactly one row (pk=1)."""

    auto_redeem = models.BooleanField(
        default=False,
        help_text="A checkout event that names a coupon code redeems that coupon, "
        "without a separate coupon redeem event.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "module settings"
        verbose_name_plural = "module settings"

    def __str__(self) -> str:
        return "Coupon module settings"

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)

    @classmethod
    def load(cls) -> ModuleSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj
