"""The project's WSGI application, as `django-admin startproject` makes it:
prefork serves ``djangoshop.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoshop.settings")

application = get_wsgi_application()
