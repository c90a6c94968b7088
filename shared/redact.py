"""mask_secrets(): the one place passwords are taken out of text before anyone sees it.

Every URL that can carry credentials (Redis, `rediss://`, `redis+socket://`, `unix://`, the
database, a feed behind basic auth) reaches people through a log line, an error, `status`,
`doctor` or an export of settings. Each of those paths calls this function, or runs it as the last
log processor, so a password set in INGEST_REDIS_URL or INGEST_DATABASE_URL is never printed.
The user name stays: it tells which account is in use, and is not a secret.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host — the password runs to the last "@" before the path, so a password
# that holds an unescaped "@" is still masked whole.
_USERINFO = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/?#@\s]*:)(?P<password>[^/?#\s]+)@", re.IGNORECASE)
# ?password=… as redis-py's unix:// URLs (and some database drivers) take it.
_PASSWORD_PARAMETER = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd)=)(?P<password>[^&#\s]+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL in it shown as `***` (user name kept); a URL alone or in a sentence."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda match: f"{match['head']}{MASK}@", text)
    return _PASSWORD_PARAMETER.sub(lambda match: f"{match['head']}{MASK}", text)
