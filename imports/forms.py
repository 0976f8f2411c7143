from django import forms
from django.template.defaultfilters import filesizeformat

from couponsite.forms import BootstrapFormMixin

from .parsing import DELIMITERS, ENCODINGS, Options

NO_COLUMN = ""


class UploadForm(BootstrapFormMixin, forms.Form):
    file = forms.FileField(label="CSV file", allow_empty_file=True)  # the service says why it is refused

    def __init__(self, *args, max_size: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (
            f"One code per row, at most {filesizeformat(max_size)}. UTF-8, Windows-1252 or Latin-1; "
            "comma, semicolon, tab or pipe between columns."
        )
        self.fields["file"].widget.attrs["accept"] = ".csv,.txt,text/csv,text/plain"


class ConfigureForm(BootstrapFormMixin, forms.Form):
    """How to read the file and where to put it; the mapping's choices are the file's columns."""

    pool = forms.ModelChoiceField(
        label="Coupon pool", queryset=None, empty_label="Choose a pool",
        help_text="Only pools whose source is \u201cuploaded\u201d (and that you may see) take imports.",
    )
    delimiter = forms.ChoiceField(label="Delimiter", choices=list(DELIMITERS.items()))
    has_header = forms.BooleanField(label="The first row is a header row", required=False)
    encoding = forms.ChoiceField(label="Encoding", choices=[(key, label) for key, (_, label) in ENCODINGS.items()])
    code_column = forms.TypedChoiceField(
        label="Code column", coerce=int, error_messages={"required": "Choose which column holds the code."}
    )
    customer_column = forms.TypedChoiceField(label="Customer column", coerce=int, required=False, empty_value=None)
    expires_at_column = forms.TypedChoiceField(
        label="Expiration date column", coerce=int, required=False, empty_value=None
    )

    MAPPED = (("code", "code_column"), ("customer", "customer_column"), ("expires_at", "expires_at_column"))

    def __init__(self, *args, pools, columns: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["pool"].queryset = pools
        choices = [(str(index), label) for index, label in enumerate(columns)]
        self.fields["code_column"].choices = [(NO_COLUMN, "Choose the column"), *choices]
        for name in ("customer_column", "expires_at_column"):
            self.fields[name].choices = [(NO_COLUMN, "\u2014 not in the file \u2014"), *choices]

    @classmethod
    def mapping_initial(cls, mapping: dict[str, int]) -> dict:
        return {field: str(mapping[name]) if name in mapping else NO_COLUMN for name, field in cls.MAPPED}

    def options(self) -> Options:
        data = self.cleaned_data
        mapping = {name: data[field] for name, field in self.MAPPED if data.get(field) is not None}
        return Options(
            delimiter=data["delimiter"], has_header=data["has_header"], encoding=data["encoding"], mapping=mapping
        )

    def clean(self):
        data = super().clean()
        used = [data.get(field) for _, field in self.MAPPED if data.get(field) is not None]
        if len(used) != len(set(used)):
            raise forms.ValidationError("Choose a different column for each field.")
        return data
