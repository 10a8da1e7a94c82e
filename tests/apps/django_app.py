"""A one-file Django project, for the Django smoke test: served as WSGI (app) or ASGI (asgi)."""
from django.conf import settings

settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"],
                   SECRET_KEY="fastsock-test-" + "x" * 40, MIDDLEWARE=[], INSTALLED_APPS=[])

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request, name):
    return HttpResponse(f"hello {name}", content_type="text/plain")


def echo(request):
    return JsonResponse({"method": request.method, "body": request.body.decode(),
                         "query": request.GET.get("q")})


urlpatterns = [path("hello/<str:name>", hello), path("echo", echo)]

app = get_wsgi_application()
asgi = get_asgi_application()
