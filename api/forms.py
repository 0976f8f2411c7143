from django import forms
from django.contrib.auth.models import Group

from couponsite.forms import BootstrapFormMixin


class ApiKeyForm(BootstrapFormMixin, forms.Form):
    name = forms.CharField(max_length=100, help_text="Who or what uses the key, e.g. \u201cWeb shop\u201d.")
    groups = forms.ModelMultipleChoiceField(
        queryset=Group.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple,
        label="Limit to user groups", help_text="The key then sees only these groups' pools. None: every pool.",
    )
