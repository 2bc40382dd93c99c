"""The SMTP settings: what stops the start (a sender address and links missing, a
password outside the environment or one that would cross in clear), and the transport
the others make (STARTTLS, implicit TLS, the log)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from rero.mail_app import transport
from rero.mailer import LogOnly, Smtp
from rero.settings import SettingsError, load_settings
from tests.helpers import ROOT


@pytest.mark.parametrize(
    ("profile", "environ", "error"),
    [
        ('smtp_host = "mail.example.edu"\npublic_url = "https://rero.example.edu"', {},
         "smtp_host is set: mail_from (the sender's address) is required"),
        ('smtp_host = "mail.example.edu"\nmail_from = "rero@example.edu"', {},
         "smtp_host is set: public_url (where the links in mail point) is required"),
        ('smtp_host = "mail.example.edu"\nmail_from = "rero@example.edu"\n'
         'public_url = "https://rero.example.edu"\nsmtp_username = "rero"', {},
         "smtp_username is set: the environment variable RERO_SMTP_PASSWORD must be too"),
        ('smtp_host = "mail.example.edu"\nmail_from = "rero@example.edu"\n'
         'public_url = "https://rero.example.edu"\nsmtp_username = "rero"\n'
         'smtp_starttls = false', {"RERO_SMTP_PASSWORD": "s3cret"},
         "smtp_username is set: the password would cross in clear; set smtp_starttls or"
         " smtp_tls"),
        ('smtp_host = "mail.example.edu"\nsmtp_tls = true', {},
         "smtp_tls is set: set smtp_starttls = false (the connection is TLS already)"),
        ('mail_from = "rero at example.edu"', {},
         "invalid setting mail_from='rero at example.edu' (from PROFILE): Must be an email"
         " address (rero@lab.example.edu)."),
        ('smtp_host = "smtp://mail.example.edu"', {}, "invalid setting smtp_host="),
        ('smtp_password = "hunter2"', {},  # never echoed: only the environment has it
         "invalid setting smtp_password='***' (from PROFILE): Unknown field."),
    ],
)  # fmt: skip
def test_smtp_settings_that_stop_the_start(
    tmp_path: Any, profile: str, environ: dict[str, str], error: str
) -> None:
    path = tmp_path / "profile.toml"
    path.write_text(profile + "\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(str(path), environ)
    assert str(caught.value).startswith(error.replace("PROFILE", str(path)))


def test_smtp_settings_that_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERO_SMTP_PASSWORD", "s3cret")
    settings = load_settings(str(ROOT / "config" / "test.toml"), {"RERO_SMTP_PASSWORD": "s3cret"})
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == ("", 587, True)
    assert isinstance(transport(settings), LogOnly)
    smtp = transport(
        replace(settings, smtp_host="mail.example.edu", smtp_username="rero",
                mail_from="rero@example.edu", public_url="https://rero.example.edu")
    )  # fmt: skip
    assert isinstance(smtp, Smtp)
    assert (smtp.username, smtp.password, smtp.configured) == ("rero", "s3cret", True)
    assert "s3cret" not in repr(smtp)
    implicit = transport(
        replace(settings, smtp_host="mail.example.edu", smtp_port=465, smtp_tls=True,
                smtp_starttls=False, smtp_username="rero")
    )  # fmt: skip
    assert isinstance(implicit, Smtp)
    assert (implicit.tls, implicit.starttls, implicit.port) == (True, False, 465)
