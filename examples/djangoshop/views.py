"""The shop's views: the same pages as examples/flaskshop.py, the Django way."""

import hashlib
import os

from django.conf import settings
from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

VERSION = "1"


def text(body):
    return HttpResponse(body, content_type="text/plain")


@require_safe
def home(request):
    return text(f"django shop v{VERSION}, worker {os.getpid()}\n")


def order(request):
    if request.method == "GET":  # the form, with its CSRF token (and cookie)
        return HttpResponse(
            '<form method="post"><input type="hidden" name="csrfmiddlewaretoken" '
            f'value="{get_token(request)}"><input name="item"><input name="quantity">'
            '<button>order</button></form>\n')
    item, quantity = request.POST.get("item"), request.POST.get("quantity", "")
    if not item or not quantity.isdigit():
        return HttpResponseBadRequest()
    return text(f"ordered {quantity} x {item}\n")


@csrf_exempt  # an API endpoint for machines, not a form
@require_POST
def upload(request):
    digest, size = hashlib.sha256(), 0
    while chunk := request.read(65536):
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"bytes": size, "sha256": digest.hexdigest()})


@require_safe
def stream(request):
    count = min(int(request.GET.get("lines", "5")), 10_000)
    return StreamingHttpResponse((f"line {i}\n" for i in range(count)),
                                 content_type="text/plain")


@require_safe
def files(request, name):
    path = os.path.join(settings.SHOP_FILES, os.path.basename(name))
    if not os.path.isfile(path):
        raise Http404(name)
    return FileResponse(open(path, "rb"))


@require_safe
def client(request):
    return text(f"{request.META['REMOTE_ADDR']} {request.scheme}\n")
