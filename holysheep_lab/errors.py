"""One exception tree for holysheep-lab.

    HolySheepError
    ├── ConfigError            (also ValueError) bad budget, price, time zone, option
    │   └── UnmeteredEndpointError  a POST to an endpoint no adapter can meter (nothing sent)
    ├── UnknownModelError      (also KeyError-free: a plain HolySheepError) model not in the price table
    ├── BudgetExceededError    a call refused by the guard before anything was sent
    ├── APIError               the relay answered, but not with a usable completion
    │   ├── RateLimitError     HTTP 429 after the retries ran out
    │   ├── ServerError        HTTP 5xx after the retries ran out
    │   └── ResponseFormatError  malformed JSON, an HTML error page, missing or negative usage
    ├── APIConnectionError     could not reach the relay (DNS, refused, reset)
    │   └── APITimeoutError    the relay did not answer in time
    ├── LedgerError            the shared ledger failed
    │   └── LedgerUnavailableError  the shared ledger cannot be reached (the guard fails closed)
    ├── LogError               the call log cannot be written (unwritable folder, disk full)
    ├── AlertDeliveryError     a channel could not deliver (recorded, never raised into a call)
    └── MissingExtraError      (also ImportError) an optional package is not installed

Messages name the problem and the fix, and never contain a secret (API key, webhook URL,
SMTP password): `redact()` is applied wherever outside text is quoted.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AlertDeliveryError",
    "BudgetExceededError",
    "ConfigError",
    "HolySheepError",
    "LedgerError",
    "LedgerUnavailableError",
    "LogError",
    "MissingExtraError",
    "RateLimitError",
    "ResponseFormatError",
    "ServerError",
    "UnknownModelError",
    "UnmeteredEndpointError",
    "redact",
    "safe_url",
]

# Bearer tokens, sk-style keys and URL credentials/paths of webhooks: enough to never echo a secret.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\b(sk|hs|xox[abpr])-[A-Za-z0-9_-]{6,}"),
    re.compile(r"(https?://(?:hooks\.slack\.com|discord(?:app)?\.com)/)\S+"),
    re.compile(r"(?i)([?&](?:api[_-]?key|key|token|access_token|sig|signature|password)=)[^&\s#]+"),
]
# The user-info part of any URL (`https://user:pass@host`, `redis://:pw@host`, `https://token@host`).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]*@")


def redact(text: str, *secrets: str | None) -> str:
    """Return `text` with the given secrets and anything key-shaped replaced by ``***``."""
    # Longest first: a secret that contains another (Basic's "user:pass" and "pass") goes whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    text = _URL_USERINFO.sub(r"\1", text)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "***", text)
    return text


def safe_url(url: object, limit: int = 80) -> str:
    """`url` as it may be shown: without credentials (`https://user:pass@host/v1` ->
    `https://host/v1`), key-shaped parts redacted, cut to `limit` characters."""
    text = redact(str(url))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HolySheepError(Exception):
    """Base class of every error holysheep-lab raises."""


class ConfigError(HolySheepError, ValueError):
    """A setting is invalid; the message says what is allowed."""


class UnmeteredEndpointError(ConfigError):
    """A POST to a relay endpoint whose cost no adapter can read (images, audio, files...):
    refused before sending, since its spend could be neither bounded nor logged."""

    def __init__(self, method: str, path: str, allow_as: str, metered: list[str]) -> None:
        self.path = redact(path)
        super().__init__(
            f"{method.upper()} {self.path} has no cost adapter, so its spend can be neither bounded nor logged; "
            f"nothing was sent. Metered endpoints: {', '.join(metered)}. To send it anyway, unmetered and not "
            f"counted against any budget (each call logged as 'unmetered'): passthrough=[{redact(allow_as)!r}]."
        )


class MissingExtraError(HolySheepError, ImportError):
    """An optional package is needed for this feature."""

    def __init__(self, package: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional package {package!r}: pip install {package}"
        )


class UnknownModelError(HolySheepError):
    """The model has no price, so its cost (and the budget) cannot be known."""

    def __init__(self, model: str, known: list[str] | None = None) -> None:
        import difflib

        self.model = model
        # The price table's names closest to the typo ('gpt-4.l' -> 'gpt-4.1'), best first.
        self.suggestions: list[str] = difflib.get_close_matches(model.lower(), known or [], n=3, cutoff=0.6)
        hint = ""
        if self.suggestions:
            hint = f" Did you mean {self.suggestions[0]!r}?"
            if len(self.suggestions) > 1:
                hint += f" (or {', '.join(map(repr, self.suggestions[1:]))})"
        super().__init__(
            f"No price for model {model!r}; nothing was sent.{hint} Add one with "
            f"prices={{{model!r}: hs.Price(input=..., output=...)}} (USD per 1M tokens) or a "
            "TOML/JSON price file, or pass allow_unpriced=True to log such calls as 'unpriced'."
        )


class BudgetExceededError(HolySheepError):
    """The guard refused a call because its worst case could pass a budget's block threshold.

    Nothing was sent. Attributes say which budget and by how much.
    """

    def __init__(
        self,
        *,
        scope: str,
        window: str,
        spent: Decimal,
        reserved: Decimal,
        limit: Decimal,
        estimate: Decimal,
        resets_at: datetime | None,
        model: str | None = None,
    ) -> None:
        self.scope = scope
        self.window = window
        self.spent = spent
        self.reserved = reserved
        self.limit = limit
        self.estimate = estimate
        self.resets_at = resets_at
        self.model = model
        reset = f"; it resets at {resets_at.isoformat(timespec='minutes')}" if resets_at else ""
        super().__init__(
            f"Refused before sending: the {window} budget of {scope} would pass its block "
            f"limit (spent ${spent:.6f} + in flight ${reserved:.6f} + this call's worst case "
            f"${estimate:.6f} > ${limit:.6f}){reset}. Lower max_tokens, shorten the prompt, "
            "or raise the budget."
        )


class APIError(HolySheepError):
    """The relay answered, but not with a usable completion."""

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "") -> None:
        self.status_code = status_code
        self.body = redact(body[:500])
        super().__init__(redact(message))


class RateLimitError(APIError):
    """HTTP 429 from the relay after the retries ran out."""


class ServerError(APIError):
    """HTTP 5xx from the relay after the retries ran out."""


class ResponseFormatError(APIError):
    """The response was not a valid chat completion (bad JSON, HTML page, bad usage)."""


class APIConnectionError(HolySheepError):
    """The relay could not be reached."""


class APITimeoutError(APIConnectionError):
    """The relay did not answer in time."""


class LedgerError(HolySheepError):
    """The ledger failed."""


class LedgerUnavailableError(LedgerError):
    """The shared ledger cannot be reached; with fail-closed (the default) calls are refused."""


class LogError(HolySheepError):
    """The call log cannot be written."""


class AlertDeliveryError(HolySheepError):
    """A channel could not deliver an alert (recorded; never raised into the triggering call).

    `retryable` False tells the AlertManager not to try again (a 4xx, a refused login);
    `retry_after` (seconds) is the server's wish for the next try; `status_code` the HTTP
    status, if there was one.
    """

    def __init__(
        self,
        channel: str,
        reason: str,
        *,
        retryable: bool = True,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.channel = channel
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(f"{channel}: {redact(reason)}")
