from decimal import Decimal

from django import forms

from couponsite.forms import BootstrapFormMixin, StackedRadioSelect
from pools.forms import PoolForm

from .propagation import UpdateMethod
from .services.customers import ID_MAX


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


class DialogForm(BootstrapFormMixin, forms.Form):
    """A row action dialog's form: a refusal of the action's service is shown on the
    field it concerns (``ERROR_FIELDS``: refusal code -> field), else above the fields."""

    ERROR_FIELDS: dict[str, str] = {}

    def error_field(self, code: str) -> str | None:
        return self.ERROR_FIELDS.get(code)

    def place_error(self, error) -> None:
        """Show a ``CouponActionError`` of the service in this form, keeping the input."""
        name = self.error_field(getattr(error, "code", ""))
        self.add_error(name, str(error))
        if name is not None:
            widget = self.fields[name].widget
            if "is-invalid" not in widget.attrs.get("class", ""):
                widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()


class TransferForm(DialogForm):
    CUSTOMER_CODES = ("customer_not_found", "customer_mismatch", "customer_ambiguous", "same_customer")

    customer_id = forms.CharField(label="Target customer ID", required=False, max_length=128)
    email = forms.EmailField(label="Target customer email", required=False)

    def clean(self):
        data = super().clean()
        if not data.get("customer_id") and not data.get("email"):
            raise forms.ValidationError("Enter the target customer's ID, email, or both.")
        return data

    def error_field(self, code: str) -> str | None:
        if code not in self.CUSTOMER_CODES:
            return None
        # The field that named the customer: the ID when given (an email is only checked against it).
        return "customer_id" if self.cleaned_data.get("customer_id") else "email"


class GiftCardRedeemForm(DialogForm):
    ERROR_FIELDS = {code: "amount" for code in ("amount_invalid", "insufficient_balance", "below_minimum_redemption")}

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


class CustomerForm(BootstrapFormMixin, forms.Form):
    """A customer's fields for the create and edit pages. Their rules are the service's
    (``coupons.services.customer_clean``, the API's too): ``add_refusal`` puts its
    errors on the fields, and the page shows the form again with what was typed."""

    external_id = forms.CharField(
        label="Customer ID", widget=forms.TextInput(attrs={"maxlength": ID_MAX, "autocomplete": "off"}),
        help_text="The ID the shop and the API know the customer by. It cannot be changed later.",
    )
    email = forms.CharField(
        label="Email", required=False, widget=forms.EmailInput(attrs={"autocomplete": "off"}),
        help_text="Optional. Transfers can find the customer by it.",
    )
    currency = forms.CharField(
        label="Currency", required=False, widget=forms.TextInput(attrs={"maxlength": 3, "class": "max-w-8"}),
        help_text="Optional. Three letters (ISO 4217, such as EUR). Gift cards in a currency are given "
                  "only to customers in it.",
    )

    def __init__(self, *args, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["external_id"]

    def add_refusal(self, error, field=None) -> None:
        """A ``ValidationError`` from the service (by field) or a refusal's message."""
        self.add_error(field, error)
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                if "is-invalid" not in widget.attrs.get("class", ""):
                    widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()
