"""integrations.url_safety: the SSRF verdict table and the private-target allow list.

No test here touches the network: names resolve through a stub, and the network guard makes
every socket connect / name lookup fail and be recorded. The guarantees of the client that
sends through the guard (one lookup, pinned address, SNI, no redirects, no proxy) are tested
against real loopback servers in test_delivery_client.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from integrations import url_safety
from integrations.url_safety import (
    SSRF_ERROR,
    CheckedTarget,
    UnsafeURLError,
    check_url,
    is_public_address,
    resolve_host,
    validate_endpoint_url,
)
from tests.network import NetworkGuard

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:4700::1111"
SSRF_CODES = {"userinfo", "host", "private"}

DNS: dict[str, list[str]] = {
    "hooks.example.com": [PUBLIC_V4],
    "rebind.example.com": [PUBLIC_V4, "10.0.0.1"],
    "v6.example.com": [PUBLIC_V6],
    "dual.example.com": [PUBLIC_V4, PUBLIC_V6],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "private6.example.com": ["fd00::1"],
    "cgnat.example.com": ["100.64.1.1"],
    "linklocal6.example.com": ["fe80::1%eth0"],
    "empty.example.com": [],
    "garbage.example.com": ["not-an-ip"],
    "xn--bcher-kva.example": [PUBLIC_V4],
    "loopback.example.test": ["127.0.0.1"],
    "halfprivate.example.test": ["127.0.0.1", "10.0.0.1"],
}


class StubResolver:
    """A resolver reading DNS above; unknown names and nxdomain raise socket.gaierror."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = DNS if table is None else table
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.table[host])


pytestmark = pytest.mark.usefixtures("network_guard")


@pytest.fixture
def resolver() -> StubResolver:
    """A fresh stub resolver."""
    return StubResolver()


# (url, expected): expected is None when allowed, else the UnsafeURLError code.
# Checked with allow_http=True and no allowed private targets unless a test says otherwise.
CASES: list[tuple[str, str | None]] = [
    # Allowed: public names and literals.
    ("https://hooks.example.com/webhook", None),
    ("http://hooks.example.com/webhook", None),
    ("https://HOOKS.Example.COM./x", None),
    ("https://hooks.example.com:443/x", None),
    ("https://hooks.example.com:8443/x", None),
    ("https://hooks.example.com:/x", None),
    ("https://hooks.example.com/path?q=1#frag", None),
    ("https://hooks.example.com", None),
    ("https://v6.example.com/", None),
    ("https://dual.example.com/", None),
    ("https://bücher.example/", None),
    (f"https://{PUBLIC_V4}/hook", None),
    (f"https://[{PUBLIC_V6}]/hook", None),
    ("https://[2002:5db8:d822::1]/", None),  # 6to4 embedding a public IPv4
    ("https://[64:ff9b::5db8:d822]/", None),  # NAT64 embedding a public IPv4
    ("https://hooks.example.com?@127.0.0.1/", None),  # the "@" is in the query, not the host
    ("https://\u200bhooks.example.com/", None),  # IDNA drops the zero-width space
    # Private and reserved IPv4 literals.
    ("http://169.254.169.254/latest/meta-data/", "private"),
    ("http://127.0.0.1:9000/hook", "private"),
    ("http://10.0.0.5/hook", "private"),
    ("http://127.0.0.1/", "private"),
    ("https://127.255.255.254/", "private"),
    ("https://127.0.0.1./", "private"),
    ("https://172.16.0.1/", "private"),
    ("https://172.31.255.255/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://169.254.0.1/", "private"),
    ("https://100.64.0.1/", "private"),
    ("https://100.127.255.255/", "private"),
    ("https://0.0.0.0/", "private"),
    ("https://0.1.2.3/", "private"),
    ("https://224.0.0.1/", "private"),
    ("https://239.255.255.250/", "private"),
    ("https://255.255.255.255/", "private"),
    ("https://240.0.0.1/", "private"),
    ("https://192.0.2.1/", "private"),
    ("https://198.51.100.7/", "private"),
    ("https://203.0.113.9/", "private"),
    ("https://198.18.0.1/", "private"),
    ("https://198.19.255.255/", "private"),
    ("https://192.0.0.1/", "private"),
    ("https://192.0.0.9/", "private"),  # Python calls this one global; 192.0.0/24 is refused
    ("https://１２７．０．０．１/", "private"),  # fullwidth, folded by IDNA to 127.0.0.1
    ("https://127。0。0。1/", "private"),  # ideographic full stops
    # IPv6 literals.
    ("https://[::1]/", "private"),
    ("https://[0:0:0:0:0:0:0:1]:8443/", "private"),
    ("https://[::]/", "private"),
    ("https://[fc00::1]/", "private"),
    ("https://[fd12:3456::1]/", "private"),
    ("https://[fe80::1]/", "private"),
    ("https://[fec0::1]/", "private"),
    ("https://[ff02::1]/", "private"),
    ("https://[ff0e::1]/", "private"),
    ("https://[2001:db8::1]/", "private"),
    ("https://[::ffff:127.0.0.1]/", "private"),
    ("https://[::ffff:7f00:1]/", "private"),
    ("https://[::ffff:169.254.169.254]/", "private"),
    ("https://[::ffff:93.184.216.34]/", "private"),  # mapped is refused even when public
    ("https://[::127.0.0.1]/", "private"),  # IPv4-compatible
    ("https://[::a9fe:a9fe]/", "private"),
    ("https://[2002:7f00:1::]/", "private"),  # 6to4 of 127.0.0.1
    ("https://[2002:a9fe:a9fe::1]/", "private"),  # 6to4 of 169.254.169.254
    ("https://[64:ff9b::a9fe:a9fe]/", "private"),  # NAT64 of 169.254.169.254
    ("https://[64:ff9b::7f00:1]/", "private"),
    ("https://[64:ff9b:1::5db8:d822]/", "private"),  # local-use NAT64
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "private"),  # Teredo
    ("https://[fe80::1%25eth0]/", "host"),  # zone ID
    # Names resolving to private addresses.
    ("https://metadata.example.com/latest/meta-data/", "private"),
    ("https://rebind.example.com/", "private"),
    ("https://mapped.example.com/", "private"),
    ("https://private6.example.com/", "private"),
    ("https://cgnat.example.com/", "private"),
    ("https://linklocal6.example.com/", "private"),
    # Numeric host tricks that resolvers and browsers read as IPv4.
    ("http://2130706433/", "host"),
    ("http://0177.0.0.1/", "host"),
    ("http://0x7f.1/", "host"),
    ("http://127.1/", "host"),
    ("http://127.0.1/", "host"),
    ("http://0x7f000001/", "host"),
    ("http://0X7F.0X0.0.1/", "host"),
    ("http://017700000001/", "host"),
    ("http://127.0.0.01/", "host"),
    ("http://0x7f.0.0.1/", "host"),
    ("http://1.2.3.4.5/", "host"),
    ("http://0/", "host"),
    ("http://3627734562/", "host"),  # decimal form of a public address: still refused
    ("http://93.184.216.034/", "host"),
    ("http://foo.0x7f/", "host"),
    ("https://127%2e0%2e0%2e1/", "host"),
    ("https://hooks.example.com%2f.127.0.0.1/", "host"),
    ("https://hooks.example.com%40127.0.0.1/", "host"),
    # Local names.
    ("http://localhost/", "host"),
    ("http://localhost:8000/hook", "host"),
    ("http://LOCALHOST./", "host"),
    ("http://localhost../", "host"),
    ("http://api.localhost/", "host"),
    ("https://localhost.localdomain/", "host"),
    ("https://printer.local/", "host"),
    ("https://metadata.google.internal/computeMetadata/v1/", "host"),
    ("https://router.home.arpa/", "host"),
    ("https://ⓛocalhost/", "host"),  # IDNA folds it to localhost
    ("https://ｌｏｃａｌｈｏｓｔ/", "host"),
    ("https://0x7f。1/", "host"),
    ("https://intranet/", "host"),  # single label: search domains or /etc/hosts only
    # Userinfo.
    ("https://good.example@127.0.0.1/", "userinfo"),
    ("https://user:pass@hooks.example.com/", "userinfo"),
    ("https://hooks.example.com@hooks.example.com/", "userinfo"),
    ("https://127.0.0.1%2f@hooks.example.com/", "userinfo"),
    ("https://@hooks.example.com/", "userinfo"),
    ("https://hooks.example.com:443@10.0.0.1/", "userinfo"),
    # Schemes.
    ("ftp://hooks.example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:6379/_INFO", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("data:text/plain,hi", "scheme"),
    ("dict://127.0.0.1:11211/", "scheme"),
    ("ws://hooks.example.com/", "scheme"),
    ("hooks.example.com/webhook", "scheme"),
    ("//hooks.example.com/webhook", "scheme"),
    # Ports.
    ("https://hooks.example.com:0/", "port"),
    ("https://hooks.example.com:65536/", "port"),
    ("https://hooks.example.com:99999999999/", "port"),
    ("https://hooks.example.com:80a/", "port"),
    ("https://hooks.example.com:+443/", "port"),
    ("https://hooks.example.com:-1/", "port"),
    # Garbage.
    ("", "invalid"),
    ("   ", "invalid"),
    ("not a url", "invalid"),
    ("https://", "invalid"),
    ("https:///path", "invalid"),
    ("https:hooks.example.com", "invalid"),
    ("https://hooks.example.com\\@127.0.0.1/", "invalid"),
    ("https://hooks.example.com /", "invalid"),
    ("https://hooks.example.com/\n", "invalid"),
    ("https://hooks.exa\tmple.com/", "invalid"),
    ("https://[::1/", "invalid"),
    ("https://[v1.fe]/", "invalid"),
    ("https://[127.0.0.1]/", "invalid"),
    ("https://::1/", "invalid"),
    ("https://a..b.example.com/", "invalid"),
    ("https://" + "a" * 64 + ".example.com/", "invalid"),
    ("https://hooks!.example.com/", "invalid"),
    ("https://hooks.example.com＠127.0.0.1/", "invalid"),  # fullwidth @, NFKC-checked
    ("https://hooks.example.com:８０/", "port"),
    ("https://hooks.example.com/" + "a" * 2100, "invalid"),
    # Resolution failures.
    ("https://nxdomain.example.com/", "unresolvable"),
    ("https://unknown.example.org/", "unresolvable"),
    ("https://empty.example.com/", "unresolvable"),
    ("https://garbage.example.com/", "unresolvable"),
]


def test_table_is_big_enough_and_has_no_duplicates() -> None:
    urls = [url for url, _ in CASES]
    assert len(urls) >= 60
    assert len(set(urls)) == len(urls)


@pytest.mark.parametrize(("url", "expected"), CASES)
def test_verdicts(
    url: str, expected: str | None, resolver: StubResolver, network_guard: NetworkGuard
) -> None:
    if expected is None:
        target = check_url(url, allow_http=True, allowed_private_targets=[], resolver=resolver)
        assert isinstance(target, CheckedTarget)
        assert target.address == target.addresses[0]
        assert all(is_public_address(address) for address in target.addresses)
    else:
        with pytest.raises(UnsafeURLError) as excinfo:
            check_url(url, allow_http=True, allowed_private_targets=[], resolver=resolver)
        assert excinfo.value.code == expected
        if expected in SSRF_CODES:
            assert str(excinfo.value) == SSRF_ERROR
    assert network_guard.attempts == []


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com@127.0.0.1/",
        "https://localhost/",
        "https://2130706433/",
        "https://127.0.0.1/",
        "https://[::ffff:127.0.0.1]/",
        "https://intranet/",
    ],
)
def test_refused_before_any_lookup_of_the_name(url: str, resolver: StubResolver) -> None:
    with pytest.raises(UnsafeURLError):
        check_url(url, resolver=resolver, allowed_private_targets=[])
    assert resolver.calls == []


def test_checked_target_is_normalized(resolver: StubResolver) -> None:
    target = check_url("https://HOOKS.Example.COM.:443/a/b?x=1#f", resolver=resolver)
    assert target == CheckedTarget(
        url="https://hooks.example.com/a/b?x=1#f",
        scheme="https",
        host="hooks.example.com",
        port=443,
        addresses=(PUBLIC_V4,),
        address=PUBLIC_V4,
    )
    assert resolver.calls == [("hooks.example.com", 443)]


def test_checked_target_keeps_every_address_and_connects_to_the_first(
    resolver: StubResolver,
) -> None:
    target = check_url("https://dual.example.com:8443", resolver=resolver)
    assert target.url == "https://dual.example.com:8443/"
    assert target.addresses == (PUBLIC_V4, PUBLIC_V6)
    assert target.address == PUBLIC_V4
    assert target.host_header == "dual.example.com:8443"


def test_idna_and_ipv6_literal_normalization(resolver: StubResolver) -> None:
    idn = check_url("https://BÜCHER.example/x", resolver=resolver)
    assert (idn.host, idn.url) == ("xn--bcher-kva.example", "https://xn--bcher-kva.example/x")
    literal = check_url("http://[2606:4700:0::1111]:80/", allow_http=True, resolver=resolver)
    assert literal.host == PUBLIC_V6
    assert literal.url == f"http://[{PUBLIC_V6}]/"
    assert literal.host_header == f"[{PUBLIC_V6}]"
    assert resolver.calls == [("xn--bcher-kva.example", 443)]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://hooks.example.com/", "scheme"),
        ("http://169.254.169.254/latest/meta-data/", "private"),
        ("http://10.0.0.5/hook", "private"),
        ("HTTPS://hooks.example.com/", None),
    ],
)
def test_http_is_refused_unless_allowed(
    url: str, expected: str | None, resolver: StubResolver
) -> None:
    """A private address is reported as SSRF even over http (the walkthrough's wording)."""
    if expected is None:
        assert check_url(url, allow_http=False, resolver=resolver).scheme == "https"
        return
    with pytest.raises(UnsafeURLError) as excinfo:
        check_url(url, allow_http=False, resolver=resolver)
    assert excinfo.value.code == expected
    wanted = "Use an https:// URL." if expected == "scheme" else SSRF_ERROR
    assert str(excinfo.value) == wanted


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "2002:5db8:d822::1", "64:ff9b::808:808"],
)
def test_is_public_address_accepts_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "224.0.0.1",
        "192.0.0.9",
        "::1",
        "::ffff:8.8.8.8",
        "64:ff9b::a9fe:a9fe",
        "2002:a00:1::",
        "2001::1",
        "fe80::1%eth0",
        "ff0e::1",
        "3fff::1",
        "not-an-ip",
        "",
    ],
)
def test_is_public_address_refuses_the_rest(address: str) -> None:
    assert not is_public_address(address)


def test_resolve_host_returns_unique_address_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []

    def fake_getaddrinfo(*args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        seen.append(args)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, 443)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (PUBLIC_V6, 443, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_V4, 443)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert resolve_host("hooks.example.com", 443) == [PUBLIC_V4, PUBLIC_V6]
    assert seen == [("hooks.example.com", 443)]


def test_check_url_uses_module_resolver_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    stub = StubResolver()
    monkeypatch.setattr(url_safety, "resolve_host", stub)
    assert check_url("https://hooks.example.com/").address == PUBLIC_V4
    assert stub.calls == [("hooks.example.com", 443)]


# --- WEBHOOK_ALLOWED_PRIVATE_TARGETS -------------------------------------------------------

LOCAL = ["127.0.0.1:8765"]


@pytest.mark.parametrize(
    ("url", "allowed", "expected"),
    [
        ("http://127.0.0.1:8765/hook", LOCAL, None),
        ("https://127.0.0.1:8765/hook", LOCAL, None),
        ("http://loopback.example.test:8765/hook", LOCAL, None),
        ("http://127.0.0.1:9000/hook", LOCAL, "private"),
        ("http://127.0.0.1/", LOCAL, "private"),
        ("http://127.0.0.2:8765/", LOCAL, "private"),
        ("http://[::ffff:127.0.0.1]:8765/", LOCAL, "private"),
        ("http://[::1]:8765/", LOCAL, "private"),
        ("http://halfprivate.example.test:8765/", LOCAL, "private"),
        ("http://localhost:8765/", LOCAL, "host"),
        ("http://localhost.:8765/", LOCAL, "host"),
        ("http://2130706433:8765/", LOCAL, "host"),
        ("http://127.1:8765/", LOCAL, "host"),
        ("http://user@127.0.0.1:8765/", LOCAL, "userinfo"),
        ("http://[::1]:8765/", ["[::1]:8765"], None),
        ("http://[0:0::1]:8765/", ["[::1]:8765"], None),
        ("http://[::1]:8766/", ["[::1]:8765"], "private"),
        ("http://127.0.0.1/", ["127.0.0.1:80"], None),
        ("https://127.0.0.1/", ["127.0.0.1:80"], "private"),
        ("https://10.0.0.5/", ["10.0.0.5:443"], None),
    ],
)
def test_allowed_private_targets_are_exact_address_port_pairs(
    url: str,
    allowed: list[str],
    expected: str | None,
    resolver: StubResolver,
    network_guard: NetworkGuard,
) -> None:
    if expected is None:
        target = check_url(url, allow_http=True, allowed_private_targets=allowed, resolver=resolver)
        assert not is_public_address(target.address)
    else:
        with pytest.raises(UnsafeURLError) as excinfo:
            check_url(url, allow_http=True, allowed_private_targets=allowed, resolver=resolver)
        assert excinfo.value.code == expected
        assert str(excinfo.value) == SSRF_ERROR
    assert network_guard.attempts == []


@pytest.mark.parametrize(
    "allowed",
    [
        ["localhost:8765"],
        ["127.0.0.1"],
        ["127.0.0.1:0"],
        ["127.0.0.1:http"],
        ["::1:8765"],
        ["[::1]"],
        "127.0.0.1:8765",
    ],
)
def test_malformed_allowed_private_targets_are_a_configuration_error(
    allowed: Any, resolver: StubResolver
) -> None:
    with pytest.raises(ImproperlyConfigured):
        check_url("https://hooks.example.com/", allowed_private_targets=allowed, resolver=resolver)


def test_settings_defaults(settings: Any, resolver: StubResolver) -> None:
    del settings.WEBHOOK_ALLOW_HTTP
    del settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS
    with pytest.raises(UnsafeURLError) as excinfo:
        check_url("http://hooks.example.com/", resolver=resolver)
    assert excinfo.value.code == "scheme"
    with pytest.raises(UnsafeURLError) as excinfo:
        check_url("https://127.0.0.1:8765/", resolver=resolver)
    assert excinfo.value.code == "private"

    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = ["127.0.0.1:8765"]
    assert check_url("http://127.0.0.1:8765/hook", resolver=resolver).address == "127.0.0.1"


# --- validate_endpoint_url -------------------------------------------------------------------


@pytest.fixture
def form_settings(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings as a form sees them, with the module resolver stubbed."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_PRIVATE_TARGETS = []
    monkeypatch.setattr(url_safety, "resolve_host", StubResolver())
    return settings


@pytest.mark.parametrize("url", [url for url, code in CASES if code in SSRF_CODES])
def test_validate_endpoint_url_ssrf_message_is_exact(
    url: str, form_settings: Any, network_guard: NetworkGuard
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        validate_endpoint_url(url)
    assert excinfo.value.messages == [SSRF_ERROR]
    assert network_guard.attempts == []


@pytest.mark.parametrize(
    ("url", "allow_http", "message"),
    [
        ("http://hooks.example.com/", False, "Use an https:// URL."),
        ("ftp://hooks.example.com/", False, "Use an https:// URL."),
        ("ftp://hooks.example.com/", True, "Use an http:// or https:// URL."),
        ("https://nxdomain.example.com/", False, url_safety.UNRESOLVABLE_ERROR),
        ("https://hooks.example.com:0/", False, url_safety.PORT_ERROR),
        ("https://hooks .example.com/", False, url_safety.INVALID_CHARACTERS_ERROR),
    ],
)
def test_validate_endpoint_url_explains_how_to_fix(
    url: str, allow_http: bool, message: str, form_settings: Any
) -> None:
    form_settings.WEBHOOK_ALLOW_HTTP = allow_http
    with pytest.raises(ValidationError) as excinfo:
        validate_endpoint_url(url)
    assert excinfo.value.messages == [message]
    assert url_safety.UNRESOLVABLE_ERROR == "The host name could not be resolved. Check the URL."


def test_validate_endpoint_url_accepts_a_public_url(form_settings: Any) -> None:
    validate_endpoint_url("https://hooks.example.com/webhook")
