"""Real SMTP servers on 127.0.0.1 for tests (aiosmtpd in a thread), and their failure modes.

- `smtp_server()`: an `Inbox` that keeps every accepted message (parsed with
  email.policy.default) and can refuse the next N recipients or messages with a given reply;
  `mode="starttls"` (STARTTLS required) or `"tls"` (implicit TLS) with a self-signed
  certificate from `make_certificate()`, and optional AUTH users (LOGIN and/or PLAIN).
- `silent_server()`: a port that accepts connections and never greets (timeouts).
- `closed_port()`: a port nothing listens on (connection refused).

aiosmtpd 1.4.6 cannot bind port 0 (aio-libs/aiosmtpd#276, #388), so a free port is picked first.
Use them from a fixture, e.g. `with smtp_server() as server: yield server`.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from listener.domain import SmtpSettings

HOST = "127.0.0.1"
Mode = Literal["plain", "starttls", "tls"]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage


@dataclass
class Inbox:
    """aiosmtpd handler: keeps accepted messages; refuses the next N when told to."""

    messages: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    data_attempts: int = 0
    logins: list[str] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    _refusals: dict[str, list[str]] = field(default_factory=lambda: {"rcpt": [], "data": []})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse_next(self, count: int, reply: str, *, at: Literal["rcpt", "data"] = "data") -> None:
        """Answer the next `count` RCPT or DATA commands with `reply` ("451 4.3.0 later")."""
        with self._lock:
            self._refusals[at].extend([reply] * count)

    def _next_refusal(self, at: str) -> str | None:
        with self._lock:
            if at == "rcpt":
                self.rcpt_attempts += 1
            else:
                self.data_attempts += 1
            return self._refusals[at].pop(0) if self._refusals[at] else None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._next_refusal("rcpt")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refusal = self._next_refusal("data")
        if refusal:
            return refusal
        # Lines arrive as CRLF; a mail client shows them as text lines, so compare as such.
        content = envelope.content.replace(b"\r\n", b"\n")
        message = BytesParser(policy=policy.default).parsebytes(content)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), message))
            queue_id = f"Q{len(self.messages)}"
        self.arrived.set()
        return f"250 2.0.0 OK queued as {queue_id}"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificate(folder: Path) -> TlsFiles | None:
    """A self-signed certificate for 127.0.0.1 made by the openssl command; None without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    files = TlsFiles(cert=folder / "cert.pem", key=folder / "key.pem")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(files.key), "-out", str(files.cert), "-days", "2",
         "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}"],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return files


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    inbox: Inbox
    mode: Mode
    tls: TlsFiles | None

    def settings(self, **overrides: Any) -> SmtpSettings:
        """SmtpSettings that reach this server (trusting its certificate), fast to fail."""
        values: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "security": "none" if self.mode == "plain" else self.mode,
            "ca_file": str(self.tls.cert) if self.tls else "",
            "timeout_s": 5.0,
            "retry_backoff_s": 0.01,
        }
        return SmtpSettings(**(values | overrides))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server(
    *,
    mode: Mode = "plain",
    tls: TlsFiles | None = None,
    users: Mapping[str, str] | None = None,
    auth_mechanisms: Sequence[str] = ("LOGIN", "PLAIN"),
) -> Iterator[SmtpServer]:
    """Run an aiosmtpd server on 127.0.0.1 for the duration of the block."""
    if mode != "plain" and tls is None:
        raise ValueError(f"mode {mode!r} needs TlsFiles")
    inbox = Inbox()
    kwargs: dict[str, Any] = {"server_hostname": "smtp.test", "ready_timeout": 10.0}
    if mode == "starttls":
        assert tls is not None
        kwargs |= {"tls_context": tls.server_context(), "require_starttls": True}
    elif mode == "tls":
        assert tls is not None
        kwargs["ssl_context"] = tls.server_context()
    if users is not None:
        kwargs |= {
            "authenticator": _authenticator(inbox, users),
            "auth_required": True,
            "auth_exclude_mechanism": {"LOGIN", "PLAIN"} - set(auth_mechanisms),
        }
    for _ in range(5):  # another process may grab the free port before the server binds it
        controller = Controller(inbox, hostname=HOST, port=free_port(), **kwargs)
        try:
            controller.start()
        except OSError:
            continue
        break
    else:
        raise RuntimeError("no free port for the SMTP test server")
    try:
        yield SmtpServer(HOST, controller.port, inbox, mode, tls)
    finally:
        controller.stop()


def _authenticator(inbox: Inbox, users: Mapping[str, str]) -> Any:
    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if users.get(login) == auth_data.password.decode():
                inbox.logins.append(f"{mechanism} {login}")
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return authenticate


@contextmanager
def silent_server() -> Iterator[tuple[str, int]]:
    """A listening port that never accepts: connect succeeds (backlog), no greeting comes."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(8)
        yield HOST, sock.getsockname()[1]


def closed_port() -> tuple[str, int]:
    """A port with nothing listening (bound then released), so connecting is refused."""
    return HOST, free_port()
