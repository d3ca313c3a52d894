"""I/O: SMTP delivery, or .eml files in an outbox folder. Decides nothing.

`send_message` retries transient failures (connection errors, timeouts, 4xx replies) a few
times inside one call and never retries a permanent one (5xx, TLS or login problems). Every
failure becomes a `MailError` whose message names the server and what it said.

A retry after a timeout at the very end of DATA can deliver twice (the server may have queued
the message before its reply was lost): SMTP gives no way to tell, and a duplicate digest is
better than a missing one.
"""

from __future__ import annotations

import contextlib
import email.policy
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from listener.domain import SmtpSettings
from listener.errors import MailError
from listener.whole_file import write_whole

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 60.0


class _Client(smtplib.SMTP):
    """smtplib.SMTP that keeps the server's reply to DATA (it holds the queue id)."""

    data_reply: tuple[int, bytes] = (0, b"")

    def data(self, msg: ReadableBuffer | str) -> tuple[int, bytes]:
        self.data_reply = super().data(msg)
        return self.data_reply


class _TlsClient(_Client, smtplib.SMTP_SSL):
    """Implicit TLS, with the same DATA reply bookkeeping."""


def send_message(
    message: EmailMessage,
    smtp: SmtpSettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Deliver `message` over SMTP; return the server's reply to DATA ("250 OK queued as X")."""
    _check_addresses(message)
    context = _tls_context(smtp)
    attempts = 1 + max(smtp.retries, 0)
    delay_s = smtp.retry_backoff_s
    for attempt in range(1, attempts + 1):
        try:
            return _send_once(message, smtp, context)
        except (smtplib.SMTPException, OSError) as exc:
            problem, transient = _describe(exc, smtp)
            if not transient or attempt == attempts:
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise MailError(problem + tries) from exc
            log.warning(
                "mail_send_retrying",
                server=smtp.address,
                attempt=attempt,
                delay_s=delay_s,
                error=problem,
            )
            sleep(delay_s)
            delay_s = min(delay_s * 2, MAX_BACKOFF_S)
    raise AssertionError("unreachable: the last attempt returns or raises")


def write_outbox(message: EmailMessage, folder: Path, name: str) -> Path:
    """Write `message` as folder/<name>.eml atomically; the same name again overwrites it."""
    if not name or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise ValueError(f"outbox name must be a plain file name, not {name!r}")
    path = folder / f"{name}.eml"
    # CRLF and encoded headers: the bytes an SMTP server would have received.
    data = message.as_bytes(policy=email.policy.SMTP)
    try:
        write_whole(path, data, mode=0o600)  # a mailbox is its owner's to read
    except OSError as exc:
        raise MailError(f"cannot write outbox file {path}: {exc.strerror or exc}") from exc
    return path


def deliver(message: EmailMessage, smtp: SmtpSettings, outbox: Path, name: str) -> str:
    """SMTP when a host is configured, else the outbox; return what happened, in a few words."""
    if smtp.host:
        return f"smtp {smtp.address} {send_message(message, smtp)}"
    return f"outbox {write_outbox(message, outbox, name)}"


def _check_addresses(message: EmailMessage) -> None:
    # smtplib takes the envelope from these headers; without them it fails obscurely.
    if not (message["Sender"] or message["From"]):
        raise MailError("cannot send a message without a From header")
    if not any(message.get_all(header) for header in ("To", "Cc", "Bcc")):
        raise MailError("cannot send a message without recipients (To, Cc or Bcc)")


def _tls_context(smtp: SmtpSettings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=smtp.ca_file or None)
    except (OSError, ssl.SSLError) as exc:  # a missing or malformed CA file: not transient
        raise MailError(f"cannot load the SMTP CA file {smtp.ca_file}: {exc}") from exc


def _send_once(message: EmailMessage, smtp: SmtpSettings, context: ssl.SSLContext) -> str:
    client: _Client
    if smtp.security == "tls":
        client = _TlsClient(smtp.host, smtp.port, timeout=smtp.timeout_s, context=context)
    else:
        client = _Client(smtp.host, smtp.port, timeout=smtp.timeout_s)
    try:
        client.ehlo_or_helo_if_needed()
        if smtp.security == "starttls":
            if not client.has_extn("starttls"):
                raise MailError(f"STARTTLS not offered by SMTP server {smtp.address}")
            client.starttls(context=context)
            client.ehlo()
        if smtp.username:
            if not client.has_extn("auth"):
                raise MailError(
                    f"SMTP server {smtp.address} offers no AUTH; cannot log in as {smtp.username}"
                )
            client.login(smtp.username, smtp.password)
        refused = client.send_message(message)
        code, text = client.data_reply
        # Delivered: a failing QUIT must not turn into a retry (and a duplicate).
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
    finally:
        client.close()
    reply = f"{code} {_text(text)}"
    if refused:  # some recipients got it: retrying would send them a duplicate
        detail = ", ".join(f"{rcpt}: {c} {_text(t)}" for rcpt, (c, t) in sorted(refused.items()))
        log.warning("mail_recipients_refused", server=smtp.address, refused=detail)
        reply += f" (refused {detail})"
    return reply


def _describe(exc: BaseException, smtp: SmtpSettings) -> tuple[str, bool]:
    """A one-line account of `exc` naming the server, and whether trying again may help."""
    server = f"SMTP server {smtp.address}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = sorted(exc.recipients.items())
        noun = "recipient" if len(refusals) == 1 else "recipients"
        detail = ", ".join(f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in refusals)
        transient = bool(refusals) and all(_is_transient(code) for _, (code, _t) in refusals)
        return f"{server} refused the {noun} {detail}", transient
    if isinstance(exc, smtplib.SMTPResponseException):
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            problem = f"SMTP login failed for user {smtp.username} on {smtp.address}"
        elif isinstance(exc, smtplib.SMTPSenderRefused):
            problem = f"{server} refused the sender {exc.sender}"
        elif isinstance(exc, smtplib.SMTPConnectError):
            problem = f"{server} refused the connection"
        elif isinstance(exc, smtplib.SMTPDataError):
            problem = f"{server} rejected the message"
        else:  # EHLO, STARTTLS, AUTH or QUIT refused
            problem = f"{server} answered"
        return f"{problem}: {_reply(exc)}", _is_transient(exc.smtp_code)
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        # smtplib turns a read timeout into SMTPServerDisconnected("... timed out").
        return f"{server} did not answer within {smtp.timeout_s:g} s", True
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"{server} closed the connection unexpectedly", True
    if isinstance(exc, smtplib.SMTPException):  # e.g. SMTPNotSupportedError (SMTPUTF8)
        return f"{server}: {exc}", False
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"cannot verify the TLS certificate of {server}: {exc.verify_message}", False
    if isinstance(exc, ssl.SSLError):  # e.g. security = "tls" on a plain-text port
        return (
            f"TLS with {server} failed ({exc.reason or exc}): check smtp security and port",
            False,
        )
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach {server}: connection refused", True
    if isinstance(exc, socket.gaierror):
        return f"cannot reach {server}: cannot resolve the host ({exc.strerror})", True
    if isinstance(exc, OSError):
        return f"cannot reach {server}: {(exc.strerror or str(exc)).lower()}", True
    return f"{server}: {exc}", False


def _is_transient(code: int) -> bool:
    return 400 <= code < 500


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())
