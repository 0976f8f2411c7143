"""The permissions a loyalty manager needs, as one group administrators can hand out."""

from django.contrib.auth.models import Group, Permission

MANAGER_GROUP = "Coupon managers"
MANAGER_PERMISSIONS = [
    ("pools", "add_couponpool"),
    ("pools", "change_couponpool"),
    ("pools", "view_couponpool"),
    ("pools", "change_modulesettings"),
    ("coupons", "add_coupon"),
    ("coupons", "change_coupon"),
    ("coupons", "view_coupon"),
    ("coupons", "add_customer"),
    ("coupons", "change_customer"),
    ("coupons", "view_customer"),
]


def manager_permissions():
    from django.db.models import Q

    match = Q()
    for app_label, codename in MANAGER_PERMISSIONS:
        match |= Q(content_type__app_label=app_label, codename=codename)
    return Permission.objects.filter(match)


def manager_group_ensure() -> Group:
    group, _ = Group.objects.get_or_create(name=MANAGER_GROUP)
    group.permissions.set(manager_permissions())
    return group
