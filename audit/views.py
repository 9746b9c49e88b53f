from django.shortcuts import render

from portal.permissions import Capability, require_capability


@require_capability(Capability.VIEW_AUDIT)
def index(request):
    return render(request, "audit/index.html")
