"""Shared form helpers."""

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS

_CLASSES = {
    "select": "form-select",
    "selectmultiple": "form-select",
    "checkbox": "form-check-input",
    "checkboxinput": "form-check-input",
    "checkboxselectmultiple": "form-check-input",
    "radioselect": "btn-check",  # a button group (``components/field.html``)
    "stackedradioselect": "form-check-input",  # one radio per line
}


class StackedRadioSelect(forms.RadioSelect):
    """Radios one per line, for long labels (the default is a button group); its
    ``widget_type`` is ``stackedradioselect`` (``components/field.html``)."""


class BootstrapFormMixin:
    """Gives every widget its Bootstrap class and marks fields with errors as invalid."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget_type = type(field.widget).__name__.lower()
            css = _CLASSES.get(widget_type, "form-control")
            existing = field.widget.attrs.get("class", "")
            field.widget.attrs["class"] = f"{css} {existing}".strip()
            if widget_type == "radioselect":
                field.widget.attrs.setdefault("autocomplete", "off")  # a button group keeps no stale choice

    @property
    def has_field_errors(self) -> bool:
        """Any error that belongs to a field (shown under it, not in the form's alert)."""
        return any(name != NON_FIELD_ERRORS for name in self.errors)

    def full_clean(self):
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                if "is-invalid" not in widget.attrs.get("class", ""):
                    widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()


class BootstrapModelForm(BootstrapFormMixin, forms.ModelForm):
    def _post_clean(self):
        # A field that failed its own validation ("This field is required.") keeps that one
        # error: the model's clean() would otherwise add a second one about the same value.
        own = {name: len(errors) for name, errors in self._errors.items() if name != NON_FIELD_ERRORS}
        super()._post_clean()
        for name, count in own.items():
            del self._errors[name][count:]
