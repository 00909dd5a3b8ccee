"""A small SMTP client for tests: every reply code is kept, nothing is hidden in exceptions.

    with SmtpSession("127.0.0.1", port) as s:
        r = s.send("sender@fabrikam.example", ["ann@contoso.com", "bob@contoso.com"])
        r.rcpt["ann@contoso.com"]    # (250, '2.1.5 Ok')
        r.data                       # (250, '2.0.0 Ok: queued as 4Xyz') or None if no rcpt passed
        r.accepted                   # recipients that got 2xx at RCPT
        r.message_id                 # '<...>' to find the message in sinks and logs
        s.send(...)                  # a second message in the same SMTP session

Recipients are sent as given inside <>: pass 'Ann+News@CONTOSO.com' to test case handling. A
recipient may be (address, [esmtp params]) to send NOTIFY=/ORCPT=.
"""

import smtplib
import uuid
from email.utils import formatdate

DEFAULT_TIMEOUT = 30


class SendResult:
    def __init__(self, message_id):
        self.message_id = message_id
        self.mail = None      # (code, text)
        self.rcpt = {}        # address -> (code, text)
        self.data = None      # (code, text) or None when DATA was not attempted

    @property
    def accepted(self):
        return [a for a, (code, _) in self.rcpt.items() if 200 <= code < 300]

    @property
    def queued(self):
        return self.data is not None and 200 <= self.data[0] < 300

    @property
    def queue_id(self):
        """The queue id from Postfix's '250 2.0.0 Ok: queued as QID', or None."""
        if not self.queued:
            return None
        text = self.data[1]
        marker = "queued as "
        return text.split(marker, 1)[1].split()[0] if marker in text else None

    def __repr__(self):
        return f"SendResult(mail={self.mail}, rcpt={self.rcpt}, data={self.data})"


def make_message(sender, recipients, message_id, subject=None, extra_headers=(), body=None):
    """A small RFC 5322 message (bytes, CRLF). extra_headers: iterable of (name, value)."""
    lines = [f"From: <{sender}>",
             "To: " + ", ".join(f"<{r}>" for r in recipients),
             f"Subject: {subject or 'coexist test ' + message_id}",
             f"Date: {formatdate(localtime=False)}",
             f"Message-ID: {message_id}"]
    lines += [f"{name}: {value}" for name, value in extra_headers]
    lines += ["", body or "Test message.", ""]
    return "\r\n".join(lines).encode()


def new_message_id():
    return f"<{uuid.uuid4().hex}@coexist.test>"


class SmtpSession:
    def __init__(self, host, port, helo="client.test", timeout=DEFAULT_TIMEOUT):
        self.smtp = smtplib.SMTP(timeout=timeout)
        self.smtp.connect(host, port)
        code, text = self.smtp.ehlo(helo)
        if code != 250:
            raise smtplib.SMTPHeloError(code, text)

    def send(self, sender, recipients, message=None, mail_options=(), extra_headers=(),
             subject=None, body=None):
        """One transaction: MAIL, RCPT per recipient, DATA if any recipient passed (RSET
        otherwise). Returns a SendResult; raises only on a broken connection."""
        message_id = new_message_id()
        plain = [r if isinstance(r, str) else r[0] for r in recipients]
        if message is None:
            message = make_message(sender, plain, message_id, subject, extra_headers, body)
        result = SendResult(message_id)
        result.mail = _decode(self.smtp.mail(sender, list(mail_options)))
        if result.mail[0] >= 400:
            self.smtp.rset()
            return result
        for r in recipients:
            address, options = (r, []) if isinstance(r, str) else (r[0], list(r[1]))
            result.rcpt[address] = _decode(self.smtp.rcpt(f"<{address}>", options))
        if not result.accepted:
            self.smtp.rset()
            return result
        try:
            result.data = _decode(self.smtp.data(message))
        except smtplib.SMTPDataError as e:  # DATA itself refused (no 354)
            result.data = _decode((e.smtp_code, e.smtp_error))
        return result

    def close(self):
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _decode(reply):
    code, text = reply
    return code, text.decode("utf-8", "replace") if isinstance(text, bytes) else text
