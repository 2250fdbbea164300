"""SMTP transport (SES's SMTP interface or any other provider): smtplib with STARTTLS, SSL or none.

The conversation is driven step by step (MAIL, RCPT, DATA) rather than through `sendmail`, because
what a failure means depends on when it happened: before DATA nothing was accepted and a retry is
safe; once the message went out, a lost connection leaves the outcome unknown.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.utils import parseaddr

from ..config import SmtpSettings
from ..errors import ConfigError, SendError
from .base import (
    QUOTA_FIX,
    AccountStoppedError,
    OutcomeUnknownError,
    OutgoingMessage,
    RecipientDeferredError,
    RecipientRejectedError,
    RetryableSendError,
    SendQuota,
    SendResult,
    UnreachableError,
    names_account_condition,
)

# Reply codes about the session, not the recipient: 421 the service is closing, 454 SES's SMTP
# throttling ("Throttling failure: Maximum sending rate exceeded"); 530/534/535/538 authentication.
_SERVICE_TEMPORARY = {421, 454}
_AUTHENTICATION = {530, 534, 535, 538}
_LOGIN_FIX = "check transport.smtp.username and the password in ${env} (for SES: SMTP credentials, not the AWS keys)"


def _reply_text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _account_fix(code: int, text: str, envelope_from: str, password_env: str) -> str | None:
    """What the editor must fix when the reply is about the account or the sender, else None."""
    if "quota" in text.lower():
        return QUOTA_FIX
    if code in _AUTHENTICATION:
        return _LOGIN_FIX.format(env=password_env)
    if names_account_condition(text):
        return f"verify the sender {envelope_from} (or its domain) with the provider, and check the SMTP login"
    return None


class SmtpTransport:
    name = "smtp"

    def _classify(self, code: int, reply: bytes | str, *, at_recipient: bool) -> SendError:
        """An answer other than success -> the domain error: the account's (stop), the server's
        temporary trouble (retry), or this recipient's (deferred 4xx, rejected 5xx)."""
        text = _reply_text(reply)
        fix = _account_fix(code, text, self.envelope_from, self.settings.password_env)
        if fix is not None:
            return AccountStoppedError(text, code=str(code), fix=fix)
        if 400 <= code < 500:
            if at_recipient and code not in _SERVICE_TEMPORARY:
                return RecipientDeferredError(text, code=str(code))
            return RetryableSendError(text, code=str(code))
        return RecipientRejectedError(text, code=str(code))


    def __init__(self, settings: SmtpSettings, envelope_from: str, *, ssl_context: ssl.SSLContext | None = None):
        self.settings = settings
        self.envelope_from = parseaddr(envelope_from)[1]
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.password: str | None = None
        if settings.username:
            self.password = os.environ.get(settings.password_env)
            if not self.password:
                raise ConfigError(
                    f"transport.smtp.username is set but ${settings.password_env} is empty",
                    key="transport.smtp.password_env",
                )
        self._connection: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        try:
            if settings.security == "ssl":
                connection = smtplib.SMTP_SSL(
                    settings.host, settings.port, timeout=settings.timeout, context=self.ssl_context
                )
            else:
                connection = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
            if settings.security == "starttls":
                connection.starttls(context=self.ssl_context)
            connection.ehlo_or_helo_if_needed()
            if settings.username:
                connection.login(settings.username, self.password or "")
        except smtplib.SMTPAuthenticationError as error:
            raise AccountStoppedError(_reply_text(error.smtp_error), code=str(error.smtp_code),
                                      fix=_LOGIN_FIX.format(env=settings.password_env)) from error
        except smtplib.SMTPNotSupportedError as error:
            raise AccountStoppedError(
                f"{settings.host}: {error}", code="SMTPNotSupported",
                fix="check transport.smtp.security and port (the server offers no login there)",
            ) from error
        except smtplib.SMTPResponseException as error:  # refused at the greeting, e.g. 554 or 421
            if 400 <= error.smtp_code < 500:
                raise self._classify(error.smtp_code, error.smtp_error, at_recipient=False) from error
            raise AccountStoppedError(
                _reply_text(error.smtp_error), code=str(error.smtp_code),
                fix=f"the server {settings.host} refuses this machine: check transport.smtp.host and port",
            ) from error
        except ssl.SSLError as error:  # reached, but TLS failed: a setting, not an outage
            raise AccountStoppedError(
                f"{settings.host}:{settings.port}: {error}", code=type(error).__name__,
                fix="check transport.smtp.host, port and security (the server's certificate must match the host)",
            ) from error
        except (smtplib.SMTPException, OSError) as error:  # no connection: nothing was sent
            raise UnreachableError(f"cannot connect to {settings.host}:{settings.port}: {error}",
                                   code=type(error).__name__) from error
        return connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _mail_from(self) -> smtplib.SMTP:
        """A connection that has accepted MAIL FROM; a kept connection the server has closed since
        the last message is replaced once (nothing of this message had been sent on it)."""
        reused = self._connection is not None
        if self._connection is None:
            self._connection = self._connect()
        try:
            code, reply = self._connection.mail(self.envelope_from)
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self._drop_connection()
            if not reused:
                raise RetryableSendError(f"connection lost before the message was sent: {error}",
                                         code=type(error).__name__) from error
            return self._mail_from()
        if code != 250:
            self._reset()
            if 400 <= code < 500:
                raise self._classify(code, reply, at_recipient=False)
            fix = _account_fix(code, _reply_text(reply), self.envelope_from, self.settings.password_env)
            raise AccountStoppedError(  # a sender refused at MAIL FROM is refused for every recipient
                f"sender {self.envelope_from} refused: {_reply_text(reply)}", code=str(code),
                fix=fix or f"make the server accept the sender {self.envelope_from} (verify it, or check the SMTP login)",
            )
        return self._connection

    def _reset(self) -> None:
        try:
            if self._connection is not None:
                self._connection.rset()
        except (smtplib.SMTPException, OSError):
            self._drop_connection()

    def send(self, message: OutgoingMessage) -> SendResult:
        connection = self._mail_from()
        try:
            code, reply = connection.rcpt(message.recipient)
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            self._drop_connection()
            raise RetryableSendError(f"connection lost before DATA: {error}", code=type(error).__name__) from error
        if code not in (250, 251):
            self._reset()
            raise self._classify(code, reply, at_recipient=True)
        try:
            code, reply = connection.data(message.raw)
        except smtplib.SMTPDataError as error:
            self._reset()
            raise self._classify(error.smtp_code, error.smtp_error, at_recipient=False) from error
        except (smtplib.SMTPException, OSError) as error:
            # The message may have been transmitted and accepted before the answer was lost.
            self._drop_connection()
            raise OutcomeUnknownError(f"connection lost during DATA: {error}", code=type(error).__name__) from error
        if code != 250:
            self._reset()
            raise self._classify(code, reply, at_recipient=False)
        return SendResult(message_id=_reply_text(reply))

    def quota(self) -> SendQuota:
        return SendQuota(
            max_send_rate=self.settings.max_send_rate,
            max_24h_send=self.settings.max_24h_send,
            sent_last_24h=0,
            source="config",
        )

    def verify(self) -> None:
        """Connect, TLS and log in as a send would, then leave; sends nothing (`newsletter doctor`).
        Raises the SendError a send would meet there."""
        connection = self._connect()
        try:
            connection.quit()
        except (smtplib.SMTPException, OSError):
            connection.close()

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._drop_connection()
