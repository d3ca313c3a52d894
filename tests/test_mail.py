"""listener.mail against real SMTP servers on 127.0.0.1 (aiosmtpd) and real files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from listener import mail
from listener.domain import SmtpSettings
from listener.errors import MailError
from listener.mail import deliver, send_message, write_outbox
from tests.smtp import (
    SmtpServer,
    TlsFiles,
    closed_port,
    make_certificate,
    silent_server,
    smtp_server,
)

SUBJECT = "Listener digest — 3 items ✓"
TEXT = "Brand\n- Acme launches a rocket\n"
HTML = "<h1>Brand</h1><ul><li>Acme launches a rocket</li></ul>"
USER, PASSWORD = "digest@example.org", "s3cret-pass"  # a test account on the test server
USERS = {USER: PASSWORD}


def make_message(to: str = "team@example.org") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Listener <listener@example.org>"
    message["To"] = to
    message["Subject"] = SUBJECT
    message["Message-ID"] = "<digest-2026-11-26@listener.example.org>"
    message.set_content(TEXT)
    message.add_alternative(HTML, subtype="html")
    return message


@pytest.fixture(autouse=True)
def _fresh_logger(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CLI run in this process (configure_logging(cache=True), e.g. test_end_to_end) caches
    # the module's logger proxy for good, and capture_logs no longer sees it.
    monkeypatch.setattr(mail, "log", structlog.get_logger(mail.__name__))


class Pauses(list[float]):
    """A `sleep` that records the pauses instead of taking them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server() -> Iterator[SmtpServer]:
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    files = make_certificate(tmp_path_factory.mktemp("tls"))
    if files is None:
        pytest.skip("the openssl command is not installed")
    return files


def test_send_message_delivers_both_parts_and_headers_intact(server: SmtpServer) -> None:
    reply = send_message(make_message(), server.settings())

    assert reply == "250 2.0.0 OK queued as Q1"
    [received] = server.inbox.messages
    assert received.mail_from == "listener@example.org"
    assert received.rcpt_tos == ("team@example.org",)
    got = received.message
    assert got["Subject"] == SUBJECT
    assert got["Message-ID"] == "<digest-2026-11-26@listener.example.org>"
    assert got.get_content_type() == "multipart/alternative"
    assert got.get_body(("plain",)).get_content() == TEXT  # type: ignore[union-attr]
    assert got.get_body(("html",)).get_content().strip() == HTML  # type: ignore[union-attr]


def test_send_message_takes_the_envelope_from_to_cc_and_bcc(server: SmtpServer) -> None:
    message = make_message("a@example.org, b@example.org")
    message["Cc"] = "c@example.org"
    message["Bcc"] = "hidden@example.org"

    send_message(message, server.settings())

    [received] = server.inbox.messages
    assert set(received.rcpt_tos) == {
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "hidden@example.org",
    }
    assert received.message["Bcc"] is None  # smtplib strips it from what is sent


def test_send_message_retries_a_451_and_delivers_once(server: SmtpServer) -> None:
    server.inbox.refuse_next(2, "451 4.3.0 Try again later")
    pauses = Pauses()

    with capture_logs() as logs:
        reply = send_message(make_message(), server.settings(retry_backoff_s=0.5), sleep=pauses)

    assert reply.startswith("250 ")
    assert len(server.inbox.messages) == 1
    assert server.inbox.data_attempts == 3
    assert pauses == [0.5, 1.0]
    assert [entry["event"] for entry in logs] == ["mail_send_retrying"] * 2
    assert "451 4.3.0 Try again later" in logs[0]["error"]


def test_send_message_gives_up_after_the_retries(server: SmtpServer) -> None:
    server.inbox.refuse_next(3, "451 4.3.0 Try again later")

    with pytest.raises(MailError, match=r"rejected the message: 451 .*\(after 3 attempts\)"):
        send_message(make_message(), server.settings(retries=2), sleep=Pauses())

    assert server.inbox.messages == []
    assert server.inbox.data_attempts == 3


def test_send_message_does_not_retry_a_refused_recipient(server: SmtpServer) -> None:
    server.inbox.refuse_next(1, "550 5.1.1 No such user", at="rcpt")
    pauses = Pauses()

    with pytest.raises(MailError) as caught:
        send_message(make_message("nobody@example.org"), server.settings(), sleep=pauses)

    assert str(caught.value) == (
        f"SMTP server 127.0.0.1:{server.port} refused the recipient "
        "nobody@example.org: 550 5.1.1 No such user"
    )
    assert pauses == []
    assert server.inbox.rcpt_attempts == 1
    assert server.inbox.messages == []


def test_send_message_delivers_to_the_accepted_recipients_and_reports_the_others(
    server: SmtpServer,
) -> None:
    server.inbox.refuse_next(1, "550 5.1.1 No such user", at="rcpt")
    pauses = Pauses()

    with capture_logs() as logs:
        reply = send_message(
            make_message("gone@example.org, team@example.org"), server.settings(), sleep=pauses
        )

    assert reply == "250 2.0.0 OK queued as Q1 (refused gone@example.org: 550 5.1.1 No such user)"
    assert server.inbox.messages[0].rcpt_tos == ("team@example.org",)
    assert pauses == []  # a retry would send team@ a duplicate
    assert [entry["event"] for entry in logs] == ["mail_recipients_refused"]


def test_send_message_does_not_retry_a_permanent_data_refusal(server: SmtpServer) -> None:
    server.inbox.refuse_next(1, "554 5.7.1 Message rejected as spam")

    with pytest.raises(MailError, match=r"rejected the message: 554 5\.7\.1 Message rejected"):
        send_message(make_message(), server.settings(), sleep=Pauses())

    assert server.inbox.data_attempts == 1


def test_send_message_reports_an_unreachable_server_after_retrying() -> None:
    host, port = closed_port()
    pauses = Pauses()
    settings = SmtpSettings(host=host, port=port, security="none", retries=2, retry_backoff_s=1)

    with pytest.raises(MailError) as caught:
        send_message(make_message(), settings, sleep=pauses)

    assert str(caught.value) == (
        f"cannot reach SMTP server {host}:{port}: connection refused (after 3 attempts)"
    )
    assert pauses == [1.0, 2.0]


def test_send_message_bounds_the_backoff() -> None:
    host, port = closed_port()
    pauses = Pauses()
    settings = SmtpSettings(host=host, port=port, security="none", retries=5, retry_backoff_s=20)

    with pytest.raises(MailError):
        send_message(make_message(), settings, sleep=pauses)

    assert pauses == [20.0, 40.0, 60.0, 60.0, 60.0]


def test_send_message_times_out_on_a_server_that_never_greets() -> None:
    with silent_server() as (host, port):
        settings = SmtpSettings(host=host, port=port, security="none", timeout_s=0.3, retries=1)
        started = time.monotonic()
        with pytest.raises(MailError) as caught:
            send_message(make_message(), settings, sleep=Pauses())
        elapsed = time.monotonic() - started

    assert str(caught.value) == (
        f"SMTP server {host}:{port} did not answer within 0.3 s (after 2 attempts)"
    )
    assert 0.5 <= elapsed < 2.0


def test_send_message_requires_starttls_when_configured(server: SmtpServer) -> None:
    with pytest.raises(MailError, match=r"^STARTTLS not offered by SMTP server 127\.0\.0\.1:\d+$"):
        send_message(make_message(), server.settings(security="starttls"), sleep=Pauses())

    assert server.inbox.messages == []


def test_send_message_does_not_retry_implicit_tls_on_a_plain_port(server: SmtpServer) -> None:
    pauses = Pauses()

    with pytest.raises(MailError, match=r"TLS with SMTP server .* check smtp security and port"):
        send_message(make_message(), server.settings(security="tls"), sleep=pauses)

    assert pauses == []


def test_send_message_refuses_a_message_without_recipients(server: SmtpServer) -> None:
    message = make_message()
    del message["To"]

    with pytest.raises(MailError, match="without recipients"):
        send_message(message, server.settings())


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_send_message_logs_in_over_starttls(certificate: TlsFiles, mechanism: str) -> None:
    with smtp_server(
        mode="starttls", tls=certificate, users=USERS, auth_mechanisms=[mechanism]
    ) as server:
        settings = server.settings(username=USER, password=PASSWORD)

        reply = send_message(make_message(), settings)

        assert reply.startswith("250 ")
        assert len(server.inbox.messages) == 1
        assert server.inbox.logins == [f"{mechanism} {USER}"]


def test_send_message_reports_a_failed_login_without_the_password(certificate: TlsFiles) -> None:
    with smtp_server(mode="starttls", tls=certificate, users=USERS) as server:
        settings = server.settings(username=USER, password=PASSWORD[::-1])

        with capture_logs() as logs, pytest.raises(MailError) as caught:
            send_message(make_message(), settings, sleep=Pauses())

        assert str(caught.value).startswith(
            f"SMTP login failed for user digest@example.org on 127.0.0.1:{server.port}: 535"
        )
        assert PASSWORD[::-1] not in str(caught.value)
        assert PASSWORD[::-1] not in repr(settings)
        assert logs == []  # 535 is permanent: no retry
        assert server.inbox.messages == []


def test_send_message_over_implicit_tls(certificate: TlsFiles) -> None:
    with smtp_server(mode="tls", tls=certificate) as server:
        reply = send_message(make_message(), server.settings())

        assert reply.startswith("250 ")
        assert server.inbox.messages[0].message["Subject"] == SUBJECT


def test_send_message_rejects_an_untrusted_certificate(certificate: TlsFiles) -> None:
    with smtp_server(mode="tls", tls=certificate) as server:
        settings = server.settings(ca_file="")  # the system CAs do not know our certificate

        with pytest.raises(MailError, match="cannot verify the TLS certificate of SMTP server"):
            send_message(make_message(), settings, sleep=Pauses())

        assert server.inbox.messages == []


def test_write_outbox_writes_a_parseable_eml_file(tmp_path: Path) -> None:
    folder = tmp_path / "outbox" / "nested"

    path = write_outbox(make_message(), folder, "digest-2026-11-26")

    assert path == folder / "digest-2026-11-26.eml"
    data = path.read_bytes()
    assert b"\r\n" in data  # RFC 5322 line endings, as SMTP would send them
    parsed = BytesParser(policy=policy.default).parsebytes(data.replace(b"\r\n", b"\n"))
    assert parsed["Subject"] == SUBJECT
    assert parsed.get_body(("plain",)).get_content() == TEXT  # type: ignore[union-attr]


def test_write_outbox_overwrites_the_same_name_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    first = make_message("first@example.org")
    second = make_message("second@example.org")

    write_outbox(first, tmp_path, "digest")
    path = write_outbox(second, tmp_path, "digest")

    assert [p.name for p in tmp_path.iterdir()] == ["digest.eml"]
    assert BytesParser(policy=policy.default).parsebytes(path.read_bytes())["To"] == (
        "second@example.org"
    )


def test_write_outbox_reports_an_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-folder"
    folder.write_text("a file where the outbox should be")

    with pytest.raises(MailError, match="cannot write outbox file"):
        write_outbox(make_message(), folder, "digest")


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a/b"])
def test_write_outbox_rejects_names_that_are_not_plain_file_names(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        write_outbox(make_message(), tmp_path, name)


def test_deliver_uses_smtp_when_a_host_is_set(server: SmtpServer, tmp_path: Path) -> None:
    outcome = deliver(make_message(), server.settings(), tmp_path / "outbox", "digest")

    assert outcome == f"smtp 127.0.0.1:{server.port} 250 2.0.0 OK queued as Q1"
    assert not (tmp_path / "outbox").exists()


def test_deliver_writes_to_the_outbox_without_a_host(tmp_path: Path) -> None:
    outcome = deliver(make_message(), SmtpSettings(host=""), tmp_path, "digest")

    assert outcome == f"outbox {tmp_path / 'digest.eml'}"
    assert (tmp_path / "digest.eml").is_file()
