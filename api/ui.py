"""API keys in the Management UI (administrators): list, create (shown once), revoke."""

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.db.models import Exists, OuterRef
from django.shortcuts import get_object_or_404, redirect
from django.views.generic import TemplateView

from pools.access import groups_assignable

from .forms import ApiKeyForm
from .models import ApiKey
from .services import api_key_create, api_key_revoke


class ApiKeysView(PermissionRequiredMixin, TemplateView):
    permission_required = "api.add_apikey"
    template_name = "api/api_keys.html"

    def get_context_data(self, form=None, new_key=None, **kwargs):
        context = super().get_context_data(**kwargs)
        context.update(
            form=form or ApiKeyForm(user=self.request.user),
            keys=keys_manageable(self.request.user).prefetch_related("groups").select_related("created_by")[:200],
            new_key=new_key,
        )
        return context

    def render_to_response(self, context, **kwargs):
        response = super().render_to_response(context, **kwargs)
        response["Cache-Control"] = "no-store"  # a new key is on this page once
        return response

    def post(self, request):
        if "revoke" in request.POST:
            api_key = get_object_or_404(keys_manageable(request.user), pk=request.POST.get("revoke"))
            api_key_revoke(api_key=api_key)
            messages.success(request, f"API key \u201c{api_key.name}\u201d revoked: it no longer works.")
            return redirect("api_keys")
        form = ApiKeyForm(request.POST, user=request.user)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        api_key, key = api_key_create(name=form.cleaned_data["name"], groups=form.cleaned_data["groups"], user=request.user)
        # Rendered, not redirected: the key is shown on this response only.
        return self.render_to_response(self.get_context_data(new_key=(api_key, key)))


def keys_manageable(user):
    """Keys a user may see and revoke: all for a superuser, else keys limited to the
    user's own groups only."""
    if user.is_superuser:
        return ApiKey.objects.all()
    foreign = ApiKey.groups.through.objects.filter(apikey_id=OuterRef("pk")).exclude(group__in=groups_assignable(user))
    return ApiKey.objects.filter(groups__isnull=False).exclude(Exists(foreign)).distinct()
