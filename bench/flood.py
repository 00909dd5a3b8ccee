"""A newcomer's wait while other clients flood a socketmap server (bench/lookups.py).

FLOOD_CLIENTS connections each pipeline FLOOD_REQUESTS socketmap lookups and never read a reply,
as a broken or hostile local client could; while they push, a newcomer connects, asks one
lookup and times the answer, several times over. A server that serves each connection's whole
backlog in one turn makes the newcomer wait for all of it; one that bounds a turn's work per
connection answers the newcomer within a turn or two. Postfix's own clients send one request
at a time, so this is about how long real lookups wait while something else misbehaves.

The newcomers start as soon as every flooding client has sent its first chunk. A server that
serves the whole flood faster than that (a small one, as --quick sends, or the null server)
shows waits of a millisecond: the figure then says that no backlog was left, nothing more.

Everything is bounded: the push stops after PUSH_SECONDS, each answer has a timeout, and the
flood's connections are closed before the next server is measured.
"""

import socket
import threading
import time

FLOOD_CLIENTS = 300
FLOOD_REQUESTS = 20000
PUSH_SECONDS = 30
PROBES = 5
PROBE_TIMEOUT = 60
PROBE_KEY = "user1@contoso.com"   # a user who stays: both servers answer NOTFOUND
PROBE_ANSWER = b"9:NOTFOUND ,"


def netstring(text):
    data = text.encode()
    return str(len(data)).encode() + b":" + data + b","


def ask(port, request, complete, timeout):
    """One request on a connection of its own to 127.0.0.1:port; returns the reply (bytes) once
    complete(reply) holds or the server closes. timeout: seconds, for the connect and each read."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(request)
        reply = b""
        while not complete(reply):
            chunk = c.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def probe(port):
    """One newcomer: connect, ask, read the whole answer. Returns the wait in seconds."""
    start = time.monotonic()
    answer = ask(port, netstring(f"virtual {PROBE_KEY}"), lambda r: len(r) >= len(PROBE_ANSWER), PROBE_TIMEOUT)
    if answer != PROBE_ANSWER:
        raise RuntimeError(f"newcomer on port {port}: answer {answer!r}, expected {PROBE_ANSWER!r}")
    return time.monotonic() - start


def newcomer_waits(port, clients=FLOOD_CLIENTS, requests=FLOOD_REQUESTS, probes=PROBES):
    """The newcomer's waits in seconds (one per probe) during a flood; raises on a wrong answer."""
    payload = b"".join(netstring(f"virtual user{i}@contoso.com") for i in range(requests))
    flood = []
    try:
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            flood.append([s, 0])
        waits, failure = [], []
        under_way = threading.Event()  # every flooding client has sent its first chunk

        def probes_during_the_flood():
            try:
                under_way.wait(PUSH_SECONDS)
                for _ in range(probes):
                    waits.append(probe(port))
                    time.sleep(0.5)
            except Exception as e:  # reported by the caller
                failure.append(e)

        prober = threading.Thread(target=probes_during_the_flood, daemon=True)
        prober.start()
        deadline = time.monotonic() + PUSH_SECONDS
        while time.monotonic() < deadline and any(sent < len(payload) for _, sent in flood):
            progress = False
            for entry in flood:
                s, sent = entry
                if sent >= len(payload):
                    continue
                try:
                    n = s.send(payload[sent:sent + 65536])
                    entry[1] += n
                    progress = progress or n > 0
                except BlockingIOError:
                    pass
            under_way.set()
            if not progress:
                time.sleep(0.05)
        under_way.set()
        prober.join(PROBE_TIMEOUT * probes)
        if failure:
            raise failure[0]
        if len(waits) < probes:
            raise RuntimeError(f"newcomer on port {port}: {len(waits)} of {probes} answers")
        return waits
    finally:
        for s, _ in flood:
            s.close()


def wait_until_served_promptly(port, limit=60, prompt=0.05):
    """After a flood: until a newcomer is answered within `prompt` seconds (the closed flood's
    backlog is gone), at most `limit` seconds, so the next measurement starts on a quiet server."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if probe(port) <= prompt:
            return
        time.sleep(0.2)
