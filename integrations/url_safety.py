"""The single authority on whether a URL may be a webhook destination (SSRF defence).

Use it in two places:

* forms call :func:`validate_endpoint_url` so users get a clear message when saving;
* the delivery client (:mod:`integrations.delivery.client`) calls :func:`check_url` again
  right before every attempt (DNS answers change between save and send) and pins the
  addresses of the returned :class:`CheckedTarget` in its connector's resolver, so the
  connection goes to an address that was checked and the name is never resolved a second
  time (DNS rebinding defence).

The client keeps the checked host name in the URL, so it is what goes out as the Host header,
as TLS SNI and is checked against the certificate. It never follows a redirect and never uses
a proxy from the environment: a proxy would resolve the name itself and defeat the pin.

UnsafeURLError codes 'userinfo', 'host' and 'private' always carry :data:`SSRF_ERROR`; the
others ('scheme', 'port', 'unresolvable', 'invalid') say how to fix the URL.

``WEBHOOK_ALLOWED_PRIVATE_TARGETS`` holds exact ``address:port`` pairs (IPv6 in brackets,
e.g. ``"[::1]:8765"``) that are allowed although private, for local receivers in development
and tests. Entries are literal addresses only: host names such as ``localhost`` are refused
by name before any resolution, so they stay refused even when their address is listed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError

SSRF_ERROR = "endpoint_url must not target a private or reserved address"

SCHEME_HTTPS_ONLY_ERROR = "Use an https:// URL."
SCHEME_HTTP_OR_HTTPS_ERROR = "Use an http:// or https:// URL."
UNRESOLVABLE_ERROR = "The host name could not be resolved. Check the URL."
INVALID_ERROR = "Enter a full URL such as https://hooks.example.com/webhook."
INVALID_CHARACTERS_ERROR = "The URL must not contain spaces, control characters or backslashes."
INVALID_HOST_ERROR = "The host name is not valid. Check the URL."
PORT_ERROR = "The port must be a number from 1 to 65535."

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

# is_global alone is not enough on Python 3.11: it reports multicast (224/4, ff0e::/16),
# IPv4-mapped, NAT64, site-local fec0::/10 and parts of 192.0.0/24 as global.
_BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "168.63.129.16/32",  # Azure platform wire server (metadata, health probes)
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast 255.255.255.255
    )
)
_BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # unspecified, loopback and deprecated IPv4-compatible ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped: a dual-stack socket would connect to the IPv4
        "64:ff9b:1::/48",  # local-use NAT64; the embedded IPv4 position is operator-chosen
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")

# Names that resolve to the local machine or the local network whatever DNS says.
_BLOCKED_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})
_BLOCKED_SUFFIXES = (".localhost", ".localdomain", ".local", ".internal", ".home.arpa")

_HOST_CHARS = re.compile(r"[a-z0-9_.-]+")
# A label that inet_aton() or a WHATWG URL parser would read as a number: 0177, 0x7f, 2130706433.
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_PORT = re.compile(r"[0-9]{1,5}")


class UnsafeURLError(ValueError):
    """Raised with a message meant for the user; ``.code`` names the rule that refused it."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class CheckedTarget:
    """A URL that passed :func:`check_url`, with the address it must be sent to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    address: str

    @property
    def host_header(self) -> str:
        """The Host header value: host, bracketed if IPv6, with the port unless default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"


def resolve_host(host: str, port: int) -> list[str]:
    """Return every IP address string for host via socket.getaddrinfo (the seam tests stub)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def is_public_address(ip: str) -> bool:
    """Return True only if ip is a globally routable unicast address safe to connect to."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return _is_public(address)


def _is_public(address: IPAddress) -> bool:
    """Classify a parsed address; IPv6 forms that embed an IPv4 are judged by that IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        if address in _NAT64_WELL_KNOWN:
            # Python calls all of 64:ff9b::/96 reserved; the translator connects to the IPv4.
            return _is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.sixtofour is not None and not _is_public(address.sixtofour):
            return False
        blocked: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _BLOCKED_V6
    else:
        blocked = _BLOCKED_V4
    if any(address in network for network in blocked):
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def _parse_allowed_targets(entries: Iterable[str]) -> frozenset[tuple[IPAddress, int]]:
    """Parse 'address:port' / '[v6]:port' strings; anything else is a configuration error."""
    if isinstance(entries, str | bytes):
        raise ImproperlyConfigured(
            "WEBHOOK_ALLOWED_PRIVATE_TARGETS must be a list of 'address:port' strings."
        )
    allowed: set[tuple[IPAddress, int]] = set()
    for entry in entries:
        text = str(entry).strip()
        if text.startswith("["):
            address_text, separator, port_text = text[1:].partition("]:")
        else:
            address_text, separator, port_text = text.rpartition(":")
        try:
            address = ipaddress.ip_address(address_text)
        except ValueError:
            address = None
        port = int(port_text) if _PORT.fullmatch(port_text) else 0
        unbracketed_v6 = isinstance(address, ipaddress.IPv6Address) and not text.startswith("[")
        if not separator or address is None or unbracketed_v6 or not 1 <= port <= 65535:
            raise ImproperlyConfigured(
                f"WEBHOOK_ALLOWED_PRIVATE_TARGETS entry {entry!r} must be a literal "
                "'address:port' such as '127.0.0.1:8765' or '[::1]:8765' (no host names)."
            )
        allowed.add((address, port))
    return frozenset(allowed)


def _ssrf(code: str) -> UnsafeURLError:
    """Build the refusal used for every private/reserved/trick case."""
    return UnsafeURLError(SSRF_ERROR, code)


def _split_netloc(netloc: str) -> tuple[str, str | None, bool]:
    """Split netloc into (host, port text or None, bracketed); raise on malformed input."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end == -1:
            raise UnsafeURLError(INVALID_ERROR, "invalid")
        host, rest = netloc[1:end], netloc[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UnsafeURLError(INVALID_ERROR, "invalid")
        return host, (rest[1:] if rest else None), True
    if netloc.count(":") > 1 or "[" in netloc or "]" in netloc:
        # An unbracketed IPv6 literal or stray brackets; requests cannot use either.
        raise UnsafeURLError(INVALID_ERROR, "invalid")
    host, separator, port = netloc.partition(":")
    return host, (port if separator else None), False


def _normalize_name(raw_host: str) -> str:
    """Lowercase, IDNA-encode and strip trailing dots from a host name, refusing tricks."""
    if "%" in raw_host:
        # Percent-encoded hosts (127%2e0%2e0%2e1, evil%2f@...) are decoded by some clients.
        raise _ssrf("host")
    host = raw_host
    if not host.isascii():
        try:
            # Same IDNA 2008 + UTS 46 mapping requests applies; it also folds fullwidth digits
            # and dots (１２７．０．０．１) into ASCII, so the checks below see the real host.
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise UnsafeURLError(INVALID_HOST_ERROR, "invalid") from exc
    host = host.lower().rstrip(".")
    if not host:
        raise _ssrf("host")
    if not _HOST_CHARS.fullmatch(host):
        raise UnsafeURLError(INVALID_HOST_ERROR, "invalid")
    labels = host.split(".")
    if len(host) > 253 or any(not label or len(label) > 63 for label in labels):
        raise UnsafeURLError(INVALID_HOST_ERROR, "invalid")
    return host


def _parse_literal(host: str, bracketed: bool) -> IPAddress | None:
    """Return the address if host is an IP literal; refuse non-canonical numeric forms."""
    if bracketed:
        if "%" in host:
            raise _ssrf("host")  # zone IDs only make sense for link-local addresses
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise UnsafeURLError(INVALID_ERROR, "invalid") from exc
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        # A numeric last label makes resolvers and browsers parse the host as IPv4, which
        # accepts 2130706433, 0177.0.0.1, 0x7f.1 and 127.1; only canonical dotted quads pass.
        try:
            return ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise _ssrf("host") from exc
    return None


def _check_name(host: str) -> None:
    """Refuse names that mean this machine or the local network whatever DNS answers."""
    if host in _BLOCKED_NAMES or host.endswith(_BLOCKED_SUFFIXES) or "." not in host:
        # Single-label names only resolve through search domains or /etc/hosts: intranet.
        raise _ssrf("host")


def _resolve(resolver: Resolver, host: str, port: int) -> list[IPAddress]:
    """Resolve once through the resolver seam; any failure or garbage is 'unresolvable'."""
    try:
        raw = list(resolver(host, port))
        addresses = [ipaddress.ip_address(str(item)) for item in raw]
    except (OSError, UnicodeError, ValueError) as exc:
        raise UnsafeURLError(UNRESOLVABLE_ERROR, "unresolvable") from exc
    unique = list(dict.fromkeys(addresses))
    if not unique:
        raise UnsafeURLError(UNRESOLVABLE_ERROR, "unresolvable")
    return unique


def check_url(
    url: str,
    *,
    allow_http: bool | None = None,
    allowed_private_targets: Iterable[str] | None = None,
    resolver: Resolver | None = None,
) -> CheckedTarget:
    """Validate url and resolve its host once; raise UnsafeURLError when it is not allowed."""
    if allow_http is None:
        allow_http = bool(getattr(settings, "WEBHOOK_ALLOW_HTTP", False))
    if allowed_private_targets is None:
        allowed_private_targets = getattr(settings, "WEBHOOK_ALLOWED_PRIVATE_TARGETS", [])
    allowed = _parse_allowed_targets(allowed_private_targets)
    if resolver is None:
        resolver = resolve_host  # looked up now so tests can monkeypatch the module attribute

    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeURLError(INVALID_ERROR, "invalid")
    if any(ch.isspace() or ch == "\\" or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        # urlsplit silently drops tabs/newlines and browsers read "\" as "/": refuse both.
        raise UnsafeURLError(INVALID_CHARACTERS_ERROR, "invalid")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsafeURLError(INVALID_ERROR, "invalid") from exc

    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        message = SCHEME_HTTP_OR_HTTPS_ERROR if allow_http else SCHEME_HTTPS_ONLY_ERROR
        raise UnsafeURLError(message, "scheme")
    if not parts.netloc:
        raise UnsafeURLError(INVALID_ERROR, "invalid")
    if "@" in parts.netloc:
        # userinfo hides the real host from humans (https://good.example@127.0.0.1/).
        raise _ssrf("userinfo")

    raw_host, port_text, bracketed = _split_netloc(parts.netloc)
    if not raw_host:
        raise UnsafeURLError(INVALID_ERROR, "invalid")
    if port_text:
        if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            raise UnsafeURLError(PORT_ERROR, "port")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[scheme]

    host = raw_host if bracketed else _normalize_name(raw_host)
    literal = _parse_literal(host, bracketed)
    if literal is not None:
        host = str(literal)  # canonical form, so pool keys and pin matching are stable
    else:
        _check_name(host)

    addresses = [literal] if literal is not None else _resolve(resolver, host, port)
    for address in addresses:
        if not _is_public(address) and (address, port) not in allowed:
            raise _ssrf("private")
    # Plain http is refused after the address checks, so that http://10.0.0.5/ is reported
    # as the SSRF refusal it is (the customers' walkthrough expects that message).
    if scheme == "http" and not allow_http:
        raise UnsafeURLError(SCHEME_HTTPS_ONLY_ERROR, "scheme")

    netloc = f"[{host}]" if ":" in host else host
    if port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    normalized = f"{scheme}://{netloc}{parts.path or '/'}"
    if parts.query:
        normalized += f"?{parts.query}"
    if parts.fragment:
        normalized += f"#{parts.fragment}"
    address_strings = tuple(str(address) for address in addresses)
    return CheckedTarget(
        url=normalized,
        scheme=scheme,
        host=host,
        port=port,
        addresses=address_strings,
        address=address_strings[0],
    )


def validate_endpoint_url(url: str) -> None:
    """Form/model validator: run check_url() and turn a refusal into a ValidationError."""
    try:
        check_url(url)
    except UnsafeURLError as exc:
        raise ValidationError(exc.message, code=exc.code) from exc
