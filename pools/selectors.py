"""Reads: which pools a user may see, and terms versions."""

import copy

from django.db.models import Q, QuerySet
from django.shortcuts import get_object_or_404

from .access import pools_visible
from .models import CouponPool, CouponTerms, Product, Store

CATALOG_SHOWN = 30  # stores or products listed with a pool's terms; the rest are counted

_TERMS: dict[int, CouponTerms] = {}
_TERMS_KEPT = 2000


def terms_get(pk: int, *, pool_id: int, version: int | None = None) -> CouponTerms:
    """A terms version, from a per-process cache: a version's fields never change (only
    the ``effective`` pointer of older versions does, which callers read from the
    coupon's own row). Claims read one per request. Returns a copy to use freely.

    The entry is checked against what the caller knows (its pool, and its version when
    known), so an id reused after a database restore can never serve another pool's terms.
    """
    terms = _TERMS.get(pk)
    if terms is None or terms.pool_id != pool_id or (version is not None and terms.version != version):
        terms = CouponTerms.objects.get(pk=pk)
        if len(_TERMS) >= _TERMS_KEPT:
            _TERMS.clear()
        _TERMS[pk] = terms
    return copy.copy(terms)


def pool_terms_shown(pool: CouponPool) -> CouponTerms:
    """The terms the pool's new coupons get: its current version (a pool saved through
    ``pools.services`` always has one), else its properties as an unsaved version."""
    return pool.current_terms or CouponTerms(pool=pool, **pool.terms_snapshot())


def terms_catalog(terms: CouponTerms, *, shown: int = CATALOG_SHOWN) -> dict:
    """The stores and products ``terms`` restrict coupons to, as the terms block
    (``templates/pools/_terms.html``) lists them: the first ``shown`` of each, and how
    many more."""

    def listed(model, ids) -> dict:
        items = model.objects.filter(pk__in=ids or [])
        first = list(items[: shown + 1])
        return {"shown": first[:shown], "more": items.count() - shown if len(first) > shown else 0}

    return {"stores": listed(Store, terms.store_ids), "products": listed(Product, terms.product_ids)}


def pool_list_visible(*, user) -> QuerySet[CouponPool]:
    """The pools the user may see (``pools.access``)."""
    return pools_visible(user).select_related("user_group")


def pool_get_visible(*, user, pk: int) -> CouponPool:
    """The pool, or 404 for a pool that does not exist or that the user may not see."""
    return get_object_or_404(pool_list_visible(user=user), pk=pk)



def pool_get_by_reference(reference: str) -> CouponPool:
    """A pool by numeric id or external id (for management commands); CommandError if none."""
    from django.core.management.base import CommandError

    match = Q(external_id=reference)
    if reference.isdigit():
        match |= Q(pk=int(reference))
    try:
        return CouponPool.objects.get(match)
    except CouponPool.DoesNotExist:
        raise CommandError(f"No coupon pool has the id or external id {reference!r}.") from None
