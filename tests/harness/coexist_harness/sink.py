"""A loopback SMTP sink (Postfix's smtp-sink -d) that records every transaction it receives.

Each accepted message becomes one file; its X-Mail-Args / X-Rcpt-Args lines carry the envelope
as the sink saw it (one X-Rcpt-Args line per RCPT TO, with ORCPT=/NOTIFY= when the client sent
them). Read the sink only once the sending Postfix has an empty queue: a file is complete when
the sender has seen the 250 reply, and Postfix logs status=sent only after that.
"""

import email.parser
import email.policy
import os
import re
import subprocess

from .ports import LOOPBACK4, wait_listening

SMTP_SINK = "smtp-sink"
SINK_USER = "nobody"  # smtp-sink refuses to run as root


class SinkMessage:
    """One SMTP transaction received by a sink.

    Attributes: path (dump file), mail_from (reverse path without <>), rcpt_args (list of the raw
    X-Rcpt-Args values, e.g. '<ann@o365.contoso.com> ORCPT=rfc822;ann@contoso.com'),
    recipients (envelope recipients without <>, in RCPT order), headers (email.message.Message of
    the message as delivered: trace headers included), body (str).
    """

    _ADDR = re.compile(r"^<([^>]*)>")

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            raw = f.read()
        envelope, content = _split_envelope(raw)
        self.mail_from = None
        self.rcpt_args = []
        for name, value in envelope:
            if name == "X-Mail-Args":
                m = self._ADDR.match(value)
                self.mail_from = m.group(1) if m else value.split(" ")[0]
            elif name == "X-Rcpt-Args":
                self.rcpt_args.append(value)
        self.recipients = [self._address(a) for a in self.rcpt_args]
        self.message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(content)
        self.headers = self.message
        self.body = self.message.get_payload()

    def _address(self, rcpt_arg):
        m = self._ADDR.match(rcpt_arg)
        return m.group(1) if m else rcpt_arg.split(" ")[0]

    def rcpt_params(self, recipient):
        """The ESMTP parameters (dict, keys upper case) of the RCPT TO for `recipient`."""
        for arg, addr in zip(self.rcpt_args, self.recipients):
            if addr == recipient:
                params = {}
                for p in arg.split(" ")[1:]:
                    k, _, v = p.partition("=")
                    params[k.upper()] = v
                return params
        raise KeyError(recipient)

    def header_values(self, name):
        return self.message.get_all(name) or []

    @property
    def message_id(self):
        return (self.message.get("Message-ID") or "").strip()

    def __repr__(self):
        return f"SinkMessage(from={self.mail_from!r}, to={self.recipients!r}, id={self.message_id!r})"


def _split_envelope(raw):
    """smtp-sink writes its X-* envelope lines, then the Received: header it adds, then the
    message. Returns ([(name, value)], message bytes from the first line after the envelope)."""
    envelope = []
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip(b"\r").decode("utf-8", "replace")
        name, sep, value = line.partition(": ")
        if sep and name.startswith("X-") and name in ("X-Client-Addr", "X-Client-Proto",
                                                      "X-Helo-Args", "X-Mail-Args",
                                                      "X-Rcpt-Args"):
            envelope.append((name, value))
            i += 1
            continue
        break
    return envelope, b"\n".join(lines[i:])


class SmtpSink:
    """smtp-sink on 127.0.0.1:<free port>, dumping every message under <dir>/dump.

    name: label used by tests and in Lab.where(); port: where it listens; next_hop: the
    Postfix transport for it ('smtp:[127.0.0.1]:PORT').
    """

    def __init__(self, name, directory, port, host=LOOPBACK4):
        self.name = name
        self.host = host
        self.port = port
        self.dump_dir = os.path.join(directory, "dump")
        os.makedirs(self.dump_dir, exist_ok=True)
        os.chmod(directory, 0o755)
        os.chmod(self.dump_dir, 0o777)  # written by the unprivileged sink user
        self.process = None

    @property
    def next_hop(self):
        host = f"[{self.host}]" if ":" not in self.host else f"[ipv6:{self.host}]"
        return f"smtp:{host}:{self.port}"

    def start(self, timeout=10):
        argv = [SMTP_SINK]
        if os.geteuid() == 0:
            argv += ["-u", SINK_USER]
        argv += ["-d", os.path.join(self.dump_dir, "m."),
                 f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}",
                 "128"]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(self.host, self.port, timeout, f"smtp-sink {self.name}")
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def messages(self, message_id=None):
        """Every message received so far (oldest first), or only those with this Message-ID
        (as returned by PostfixInstance.send: '<...>')."""
        out = []
        for name in os.listdir(self.dump_dir):
            path = os.path.join(self.dump_dir, name)
            if os.path.isfile(path):
                out.append((os.stat(path).st_mtime_ns, name, SinkMessage(path)))
        out.sort(key=lambda t: (t[0], t[1]))
        msgs = [m for _, _, m in out]
        if message_id is not None:
            msgs = [m for m in msgs if m.message_id == message_id]
        return msgs

    def recipients(self, message_id=None):
        """Envelope recipients received (one entry per RCPT, duplicates kept), sorted."""
        return sorted(r for m in self.messages(message_id) for r in m.recipients)

    def clear(self):
        for name in os.listdir(self.dump_dir):
            os.unlink(os.path.join(self.dump_dir, name))

    def __repr__(self):
        return f"SmtpSink({self.name!r}, port={self.port})"
