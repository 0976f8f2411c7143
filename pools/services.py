"""Writes: creating and editing coupon pools, and the module settings.

Every save that changes the properties coupons get writes a new immutable
``CouponTerms`` version. Which existing coupons move to it is the edit's update method,
a coupon matter: ``coupons.propagation.pool_update`` saves through ``pool_change`` and
applies it in the same transaction.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from .models import CouponPool, CouponTerms, ModuleSettings

M2M_FIELDS = ("stores", "products")


def pool_create(*, actor, **fields) -> CouponPool:
    """Create a pool after checking every rule in ``CouponPool.clean``."""
    relations = {name: fields.pop(name) for name in M2M_FIELDS if name in fields}
    pool = CouponPool(created_by=actor if actor and actor.is_authenticated else None, **fields)
    with transaction.atomic():
        _pool_save(pool, relations)
        _new_terms_version(pool)
    return pool


def pool_change(*, pool: CouponPool, **fields) -> tuple[CouponPool, CouponTerms | None, CouponTerms | None]:
    """Change a pool's properties; source and pattern stay locked once generation started.

    Returns ``(pool, old_terms, new_terms)``: ``new_terms`` is the version this save
    wrote, None when no coupon property changed (existing coupons keep their version).
    """
    relations = {name: fields.pop(name) for name in M2M_FIELDS if name in fields}
    for name, value in fields.items():
        setattr(pool, name, value)
    with transaction.atomic():
        _lock_pool_row(pool)
        pool = _pool_save(pool, relations)
        old_terms = CouponTerms.objects.filter(pk=pool.current_terms_id).first()
        new_terms = pool_terms_sync(pool=pool)
    return pool, old_terms, new_terms


def _lock_pool_row(pool: CouponPool) -> None:
    """Check the source lock (``CouponPool.clean``) under the pool row's lock: a bulk
    generation start takes the same lock to set ``generation_started_at``, so the two
    are serialised, and the save writes the stored start back, never an older copy's.
    An open lock the form saw is checked again, now (a closed one stays closed).

    Not serialised with it: the first claim of a generated pool and the first chunk of an
    import or API bulk add (they insert coupons without taking the pool row: the coupon's
    pool column has no database foreign key, whose FOR KEY SHARE would serialise them,
    and a row lock on every claim would cost the hottest path). A source or pattern
    change saved in the same instant as such a first coupon can still pass.
    """
    started = CouponPool.objects.select_for_update().filter(pk=pool.pk).values_list(
        "generation_started_at", flat=True).first()
    pool.generation_started_at = started
    pool.forget_open_lock()


def pool_terms_sync(*, pool: CouponPool) -> CouponTerms | None:
    """Write a new terms version if the pool's coupon properties changed since the last.

    Coupons that exist keep their version (update method "none"); returns the new
    version, or None when nothing changed.
    """
    current = CouponTerms.objects.filter(pk=pool.current_terms_id).first()
    if current is not None and current.snapshot() == pool.terms_snapshot():
        return None
    return _new_terms_version(pool)


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


def _new_terms_version(pool: CouponPool) -> CouponTerms:
    # Lock the pool row: two simultaneous edits must not both write version N.
    CouponPool.objects.select_for_update().filter(pk=pool.pk).first()
    latest = pool.terms_versions.order_by("-version").values_list("version", flat=True).first()
    terms = CouponTerms.objects.create(pool=pool, version=(latest or 0) + 1, **pool.terms_snapshot())
    CouponTerms.objects.filter(pk=terms.pk).update(effective=terms)
    terms.effective = terms
    pool.current_terms = terms
    CouponPool.objects.filter(pk=pool.pk).update(current_terms=terms)
    return terms


def module_settings_update(*, auto_redeem: bool) -> ModuleSettings:
    with transaction.atomic():
        module_settings, _ = ModuleSettings.objects.select_for_update().get_or_create(pk=1)
        module_settings.auto_redeem = auto_redeem
        module_settings.save()
    return module_settings
