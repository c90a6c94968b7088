"""URL canonicalisation: one spelling per page, without tracking parameters or fragments."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

TRACKING_PARAMETER = re.compile(
    r"^(utm_\w+|fbclid|gclid|dclid|gbraid|wbraid|msclkid|yclid|mc_cid|mc_eid|igshid|_ga|_gl|"
    r"ref_src|ref_url|cmpid|oly_enc_id|oly_anon_id|vero_id|__twitter_impression|s_cid|mkt_tok)$",
    re.IGNORECASE,
)
DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(url: str | None) -> str | None:
    """Scheme and host lower-cased, default port, fragment and tracking parameters gone; None if not http(s)."""
    if not url or not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 address keeps its brackets: without them the port cannot be told apart
        host = f"[{host}]"
    if port and port != DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAMETER.match(k)]
    return urlunsplit((scheme, host, parts.path or "/", urlencode(query, doseq=True), ""))


def host_name(url: str | None) -> str | None:
    """The site a URL names, for a source without a name: `https://www.wire.example/x` -> `wire.example`."""
    canonical_form = canonical_url(url)
    if not canonical_form:
        return None
    host = canonical_form.split("/")[2]
    return host.rsplit("@", 1)[-1].removeprefix("www.")
