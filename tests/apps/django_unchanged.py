"""A one-file Django project for tests/integration/test_unchanged.py: a FileResponse of 3 MB
(its Content-Length kept) and a /healthz of its own (the app's route wins)."""
from django.conf import settings

settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                   SECRET_KEY="fastsock-test-" + "y" * 40, MIDDLEWARE=[], INSTALLED_APPS=[])

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import FileResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from tests.apps.unchanged import BIG_PATH  # noqa: E402


def file(request):
    return FileResponse(open(BIG_PATH, "rb"), content_type="application/octet-stream")


def healthz(request):
    return JsonResponse({"db": "down"}, status=503)


urlpatterns = [path("file", file), path("healthz", healthz)]

app = get_wsgi_application()
