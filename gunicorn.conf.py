"""gunicorn settings for the web processes: `gunicorn -c gunicorn.conf.py portal.wsgi`.

Environment (see the README's Production section):
  WEB_HOST         address to listen on (default 127.0.0.1: a proxy on the same machine;
                   0.0.0.0 or :: in a container or behind a proxy on another machine)
  PORT             port to listen on (default 8000)
  WEB_CONCURRENCY  worker processes (default 2 × the cores this process may use, + 1)
  WEB_TIMEOUT      seconds a request may take before its worker is restarted (default 30)
Access log: one JSON object per line on stdout; errors and the app's own JSON lines on stderr.
"""

import os


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores we may use (containers, cgroups)
    except AttributeError:
        return os.cpu_count() or 1


def _bind() -> str:
    host = os.environ.get("WEB_HOST", "127.0.0.1")
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return f"{host}:{int(os.environ.get('PORT', '8000'))}"


wsgi_app = "portal.wsgi:application"
bind = [_bind()]
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * _cores() + 1)
# A request (pages, API, "Send test event" with its own 10 s limit) fits well inside this.
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
# On SIGTERM, workers finish their requests for up to this long; the systemd unit's
# TimeoutStopSec (deploy/oneprotect-web.service) is longer.
graceful_timeout = 20
keepalive = 5  # behind a proxy that keeps connections open
# Recycle workers now and then so that no slow leak can grow (jitter spreads the restarts).
max_requests = 2000
max_requests_jitter = 200

accesslog = "-"
errorlog = "-"
logger_class = "portal.access_log.JsonAccessLogger"
# gunicorn's control socket (for gunicornc) is not used: signals and systemd manage it, and
# two instances on one machine would share its default path.
control_socket_disable = True
