"""WSGI entry point for production web processes (gunicorn -c gunicorn.conf.py portal.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# Like `manage.py runserver`, refuse to serve with a missing or dangerous setting: a web
# process started without SECRET_KEY, keys or a database stops here with their names.
from portal.checks import refuse_to_start_on_errors  # noqa: E402  (needs Django set up)

refuse_to_start_on_errors()
