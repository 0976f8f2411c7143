from django import forms
from django.contrib.auth.models import Group

from couponsite.forms import BootstrapFormMixin
from pools.access import groups_assignable


class ApiKeyForm(BootstrapFormMixin, forms.Form):
    name = forms.CharField(max_length=100, help_text="Who or what uses the key, e.g. \u201cWeb shop\u201d.")
    groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple,
        label="Limit to user groups", help_text="The key then sees only these groups' pools. None: every pool.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if not user.is_superuser:
            # A key can reach no further than its maker: only the maker's own groups, at least one.
            self.fields["groups"].queryset = groups_assignable(user)
            self.fields["groups"].required = True
            self.fields["groups"].help_text = "The key sees only these groups' pools (your own groups)."
