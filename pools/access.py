"""Who may see what: one policy for the users of the pages and the admin, and for API keys.

A **principal** is a logged-in user or an API key.
- Superusers, and keys not limited to any group, see every pool.
- A user sees the pools without a group, and those of the groups they belong to.
- A key limited to groups sees those groups' pools only (a shop's key is for its pools).

Everything else a principal may see follows from the pools (``coupons.access``:
coupons, customers, events, jobs, exports, statistics). Pages, the API and the admin
all ask here; the API's raw claim path asks ``pool_sql``, held to ``visible_pools`` by a
parity test.
"""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db.models import Exists, Q, QuerySet

from .models import CouponPool


def is_api_key(principal) -> bool:
    return getattr(principal, "is_api_key", False)


def is_unrestricted(principal) -> bool:
    """Sees everyone and everything."""
    if is_api_key(principal):
        has_groups = getattr(principal, "has_groups", None)  # known from the authentication query
        return not has_groups if has_groups is not None else not principal.groups.exists()
    return bool(getattr(principal, "is_superuser", False))


def visible_pools(principal) -> Q:
    """The condition on ``CouponPool`` of the pools ``principal`` may see."""
    if is_api_key(principal):
        if getattr(principal, "has_groups", True) is False:  # known from the authentication query
            return Q()
        groups = principal_groups(principal)
        # No query of its own: the key's groups are a condition inside the pool query.
        mine = Q(user_group__in=groups)
        return mine if getattr(principal, "has_groups", None) else ~Exists(groups) | mine
    if principal.is_superuser:
        return Q()
    return Q(user_group__isnull=True) | Q(user_group__in=principal.groups.all())


def principal_groups(principal) -> QuerySet:
    """The ids of the groups a key is limited to, or a user belongs to."""
    if is_api_key(principal):
        return type(principal).groups.through.objects.filter(apikey_id=principal.pk).values_list("group_id")
    return principal.groups.values_list("pk")


def groups_assignable(user) -> QuerySet[Group]:
    """The groups a user may give a pool or an API key (UI, admin, API keys page): any
    for a superuser, else only the user's own."""
    return Group.objects.order_by("name") if user.is_superuser else user.groups.order_by("name")


def pools_visible(principal) -> QuerySet[CouponPool]:
    return CouponPool.objects.filter(visible_pools(principal))


def pool_scoped(principal, path: str = "pool") -> Q:
    """The condition on any row that belongs to a pool through ``path``."""
    return Q() if is_unrestricted(principal) else Q(**{f"{path}__in": pools_visible(principal)})


def pool_sql(principal, column: str = "user_group_id") -> tuple[str, list]:
    """``visible_pools`` as an SQL condition on a pool row's group column (``""`` when
    every pool is visible), for raw queries on the hottest paths."""
    if is_api_key(principal):
        has_groups = getattr(principal, "has_groups", None)
        if has_groups is False:
            return "", []
        mine = f"{column} IN (SELECT group_id FROM api_apikey_groups WHERE apikey_id = %s)"
        if has_groups:
            return mine, [principal.pk]
        return f"({mine} OR NOT EXISTS (SELECT 1 FROM api_apikey_groups WHERE apikey_id = %s))", [principal.pk, principal.pk]
    if principal.is_superuser:
        return "", []
    return (f"({column} IS NULL OR {column} IN (SELECT group_id FROM auth_user_groups WHERE user_id = %s))",
            [principal.pk])
