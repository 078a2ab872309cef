"""Settings of a small Django project, as prefork serves one (docs/wsgi.rst):

    cd examples && prefork serve djangoshop.wsgi:application
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "an example key: set DJANGO_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
ROOT_URLCONF = "djangoshop.urls"
INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES = {}
TEMPLATES = []
USE_TZ = True
TIME_ZONE = "UTC"
# Behind nginx (docs/deploy/nginx-prefork.conf): prefork sets wsgi.url_scheme from
# X-Forwarded-Proto and REMOTE_ADDR from X-Forwarded-For, for trusted proxies only
# (forwarded_allow_ips), so Django needs no SECURE_PROXY_SSL_HEADER.
SHOP_FILES = os.environ.get("SHOP_FILES",
                            os.path.join(os.path.dirname(os.path.dirname(__file__)), "files"))
