"""Writes: creating and editing coupon pools, and the module settings."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from .models import CouponPool, ModuleSettings

M2M_FIELDS = ("stores", "products")


def pool_create(*, actor, **fields) -> CouponPool:
    """Create a pool after checking every rule in ``CouponPool.clean``."""
    relations = {name: fields.pop(name) for name in M2M_FIELDS if name in fields}
    pool = CouponPool(created_by=actor if actor and actor.is_authenticated else None, **fields)
    return _pool_save(pool, relations)


def pool_update(*, pool: CouponPool, actor, **fields) -> CouponPool:
    """Change a pool's properties; source and pattern stay locked once generation started."""
    relations = {name: fields.pop(name) for name in M2M_FIELDS if name in fields}
    for name, value in fields.items():
        setattr(pool, name, value)
    return _pool_save(pool, relations)


def _pool_save(pool: CouponPool, relations: dict) -> CouponPool:
    pool.full_clean()
    try:
        with transaction.atomic():
            pool.save()
            for name, values in relations.items():
                getattr(pool, name).set(values)
    except IntegrityError:
        # A concurrent save took the same pattern or external id after full_clean ran:
        # report it as the same validation error the form shows.
        pool.validate_unique()
        raise
    return pool


def module_settings_update(*, auto_redeem: bool) -> ModuleSettings:
    with transaction.atomic():
        module_settings, _ = ModuleSettings.objects.select_for_update().get_or_create(pk=1)
        module_settings.auto_redeem = auto_redeem
        module_settings.save()
    return module_settings
