"""Mail to users: the password-reset link.

Sent through the SMTP server on localhost:25, as the original does.  A
subscriber whose `urlbase` is `http://localhost:...` is a developer's: it
prints the mail instead (to its standard output and log), as the original does.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from .store import Store

log = logging.getLogger(__name__)

SENDER = "noreply@cat2.cloud"
SUBJECT = "Reset password of your cat2.cloud account"
SMTP_HOST, SMTP_PORT = "localhost", 25


def reset_message(email: str, link: str) -> EmailMessage:
    """The mail that carries a password-reset link."""
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = email
    message["Subject"] = SUBJECT
    message.set_content(
        f"Someone asked to reset the password of the account {email}.\n\n"
        f"To choose a new password, open this link within an hour:\n\n{link}\n\n"
        "If it was not you, ignore this mail: your password stays as it is.\n",
        cte="8bit",  # the link on one line: quoted-printable would break it up
    )
    return message


def send_reset_link(email: str, link: str, urlbase: str) -> None:
    """Mail `link` to `email` (printed instead for a localhost urlbase); failures are logged."""
    message = reset_message(email, link)
    if urlbase.startswith("http://localhost:"):
        print(f"cat2sub: password reset mail, not sent ({urlbase} is local):", flush=True)
        print(message, flush=True)
        return
    try:
        with smtplib.SMTP(SMTP_HOST, SMTP_PORT, timeout=10) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        # The caller answers 202 whatever happens: who has an account is nobody's business.
        log.error("Could not mail a password reset link to %s: %s", email, exc)


def request_reset(store: Store, email: str, urlbase: str) -> None:
    """Mail `email` a reset link if it names an active account (asked by the API and the GUI)."""
    user = store.get_user_by_email(email)
    if user is None or not user.is_active:
        return
    token = store.create_reset_token(user)
    send_reset_link(user.email, f"{urlbase}/reset-password/{token}", urlbase)
