"""Secrets never reach the logs: URL and text redaction, and the logging set-up both services
install at start (every log record redacted, chatty HTTP and Kafka client loggers capped).

What is hidden: a URL's userinfo, path and query (webhook URLs carry tokens in all three;
a Redis URL keeps its database number), phone numbers (E.164: `+…` and the last 2 digits),
ICCIDs (the last 4 characters), `whsec_` secrets and `password=`-style pairs.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit

QUIET_FLOORS = {
    # httpx logs every request's full URL at INFO; httpcore traces requests at DEBUG.
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    # aiokafka dumps whole produced and fetched messages (settings with webhook secrets and
    # phone numbers, ICCIDs) at DEBUG.
    "aiokafka": logging.INFO,
}
"""The lowest level each of these loggers is allowed, whatever level the service runs at."""

_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>()\[\]{}\\,]+")
_PHONE = re.compile(r"\+[1-9]\d{6,14}\b")
_ICCID = re.compile(r"\b89[0-9A-Za-z]{17,18}\b")
_WHSEC = re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+")
_PAIR = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key[_-]?secret"
    r"|auth[_-]?token)=[^\s&'\",;]+"
)
_DB_PATH = re.compile(r"^/\d{1,5}$")
_FORMATTER = logging.Formatter()


def redact_url(url: str) -> str:
    """`scheme://[***@]host[:port]`, plus `/…` for any path (a Redis database number is kept)
    and `?…` for a kept path's query: enough to tell which service, nothing to reuse."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not parseable as a URL: show only its scheme
        return f"{url.partition('://')[0]}://…"
    where = f"[{host}]" if ":" in host else host
    if port is not None:
        where += f":{port}"
    if parts.username is not None or parts.password is not None:
        where = f"***@{where}"
    out = f"{parts.scheme}://{where}"
    if _DB_PATH.match(parts.path):
        out += parts.path + ("?…" if parts.query else "")
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        out += "/…"
    return out


def mask_iccid(iccid: str) -> str:
    """For logs: the last 4 characters only."""
    return f"…{iccid[-4:]}"


def _url_match(found: re.Match[str]) -> str:
    url = found.group(0)
    bare = url.rstrip(".:;!?")  # sentence punctuation after a URL is not part of it
    return redact_url(bare) + url[len(bare) :]


def redact(text: str) -> str:
    """`text` with every URL, phone number, ICCID and recognisable secret masked."""
    text = _URL.sub(_url_match, text)
    text = _WHSEC.sub("whsec_***", text)
    text = _PAIR.sub(lambda m: f"{m.group(1)}=***", text)
    text = _ICCID.sub(lambda m: mask_iccid(m.group(0)), text)
    return _PHONE.sub(lambda m: f"+…{m.group(0)[-2:]}", text)


def _redacting(base: Any) -> Any:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: the handler reports it as usual
            return record
        record.msg, record.args = redact(message), ()  # () not None: mode wraps a None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    make_record.redacting = True  # type: ignore[attr-defined]
    return make_record


def install(level: str | int) -> None:
    """Redact every log record from now on (whichever handler later prints it, faust's
    included) and cap the loggers of `QUIET_FLOORS` at their floor or `level`, if higher."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacting", False):
        logging.setLogRecordFactory(_redacting(factory))
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    numeric = numeric if isinstance(numeric, int) else logging.INFO
    for name, floor in QUIET_FLOORS.items():
        logging.getLogger(name).setLevel(max(floor, numeric))
