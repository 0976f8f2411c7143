from decimal import Decimal

from django import forms

from couponsite.forms import BootstrapFormMixin, StackedRadioSelect
from pools.forms import PoolForm

from .propagation import UpdateMethod


class PoolEditForm(PoolForm):
    """The pool form; on an existing pool, also how the edit updates its coupons."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["update_method"] = forms.ChoiceField(
                label="Update criteria",
                required=False,
                choices=UpdateMethod.choices,
                initial=UpdateMethod.NONE,
                widget=StackedRadioSelect(attrs={"class": "form-check-input"}),
            )
            value = self.instance.current_terms.value if self.instance.current_terms_id else None
            self.fields["update_matching"] = forms.BooleanField(
                label="Matching",
                required=False,
                widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
                help_text="Only update coupons whose value is the current value"
                + (f" ({value})." if value is not None else "."),
            )

    def extra_sections(self) -> list:
        if not self.instance.pk:
            return []
        return [("Updating coupons", [(self["update_method"], None, None, "pools/_update_preview_slot.html", "col-12"),
                                      (self["update_matching"], None, None, None, "col-12")])]

    def update_options(self) -> dict:
        return {
            "update_method": self.cleaned_data.get("update_method") or UpdateMethod.NONE,
            "matching": bool(self.cleaned_data.get("update_matching")),
        }


class TransferForm(BootstrapFormMixin, forms.Form):
    customer_id = forms.CharField(label="Target customer ID", required=False, max_length=128)
    email = forms.EmailField(label="Target customer email", required=False)

    def clean(self):
        data = super().clean()
        if not data.get("customer_id") and not data.get("email"):
            raise forms.ValidationError("Enter the target customer's ID, email, or both.")
        return data


class GiftCardRedeemForm(BootstrapFormMixin, forms.Form):
    amount = forms.DecimalField(
        label="Amount", required=False, min_value=Decimal("0.01"), max_digits=12, decimal_places=2,
        help_text="Leave empty to use the whole balance.",
    )


class AssignForm(BootstrapFormMixin, forms.Form):
    pool = forms.ModelChoiceField(queryset=None, label="Coupon pool", empty_label="Choose a pool")

    def __init__(self, *args, pools, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pool"].queryset = pools


class GenerationForm(BootstrapFormMixin, forms.Form):
    count = forms.IntegerField(
        label="Number of coupons", min_value=1, max_value=5_000_000,
        help_text="1 to 5,000,000 per batch.",
        error_messages={"max_value": "At most 5,000,000 coupons per batch; start several batches for more."},
    )
