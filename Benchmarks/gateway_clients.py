#!/usr/bin/python3
"""The measuring clients of the gateway benchmark (issue 8), run by GatewayBenchmark once per
scenario and gateway. XMPP users are raw c2s sockets (in-band registration, SASL PLAIN, bind),
IRC users raw IRC sockets, so neither client library's parsing is what gets measured. Every
wait is bounded; the result is one JSON object on stdout.

  gateway_clients.py latency        SETTINGS_JSON
  gateway_clients.py fanout         SETTINGS_JSON
  gateway_clients.py throughput     SETTINGS_JSON
  gateway_clients.py large_channel  SETTINGS_JSON

SETTINGS_JSON names the servers (c2s port, domain, IRC port), the room address the XMPP users
join, the IRC channel, the counts, and optionally a biboumi database to write each user's
options into and a gateway PID whose RSS is read before and after the joins.
"""
import asyncio
import base64
import json
import os
import sqlite3
import statistics
import sys
import time
import xml.etree.ElementTree as ET

STREAM = "http://etherx.jabber.org/streams"
CLIENT = "jabber:client"
MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
TIMEOUT = 120


def now_ms():
    return time.perf_counter() * 1000


def rss_kib(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class XMPPClient:
    """A minimal XMPP client: enough to register, log in, join a room and exchange
    groupchat messages. Stanzas go to `on_stanza` as ElementTree elements."""

    def __init__(self, host, port, domain, user, password="bench-password"):
        self.host, self.port, self.domain, self.user, self.password = host, port, domain, user, password
        self.jid = f"{user}@{domain}"
        self.queue = asyncio.Queue()
        self.on_stanza = None

    async def _open(self):
        self.writer.write(f"<?xml version='1.0'?><stream:stream to='{self.domain}' xmlns='{CLIENT}' "
                          f"xmlns:stream='{STREAM}' version='1.0'>".encode())
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        return await self._next()  # stream:features

    def _feed(self, data):
        """The top-level elements (stanzas) `data` completes."""
        self.parser.feed(data)
        done = []
        for event, element in self.parser.read_events():
            self.depth += 1 if event == "start" else -1
            if event == "end" and self.depth == 1:
                done.append(element)
        return done

    async def _pump(self):
        while True:
            data = await self.reader.read(65536)
            if not data:
                await self.queue.put(None)
                return
            for element in self._feed(data):
                if self.on_stanza:
                    self.on_stanza(element)
                else:
                    await self.queue.put(element)

    async def _next(self):
        """The next stanza, during setup (before `_pump` runs)."""
        while self.queue.empty():
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            if not data:
                raise RuntimeError(f"{self.user}: stream closed during setup")
            for element in self._feed(data):
                self.queue.put_nowait(element)
        return self.queue.get_nowait()

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        await self._open()
        # In-band registration (XEP-0077); "conflict" when the account exists is fine.
        self.writer.write(f"<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{self.user}</username>"
                          f"<password>{self.password}</password></query></iq>".encode())
        await self._next()
        token = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        self.writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
        answer = await self._next()
        if not answer.tag.endswith("success"):
            raise RuntimeError(f"{self.user}: SASL failed: {ET.tostring(answer)[:200]}")
        await self._open()
        self.writer.write(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>".encode())
        await self._next()
        self.full_jid = f"{self.jid}/bench"
        asyncio.get_running_loop().create_task(self._pump())

    def send(self, text):
        self.writer.write(text.encode())

    async def join(self, room, nick):
        """Joins and waits for the self-presence (status 110)."""
        self.send(f"<presence to='{room}/{nick}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            stanza = await asyncio.wait_for(self.queue.get(), TIMEOUT)
            if stanza is None:
                raise RuntimeError(f"{self.user}: stream closed while joining")
            if stanza.tag == f"{{{CLIENT}}}presence":
                if stanza.get("type") == "error":
                    raise RuntimeError(f"{self.user}: join refused: {ET.tostring(stanza)[:300]}")
                codes = [s.get("code") for s in stanza.iter(f"{{{MUC_USER}}}status")]
                if "110" in codes:
                    return
        raise RuntimeError(f"{self.user}: no self-presence from {room}")

    def say(self, room, body):
        self.send(f"<message to='{room}' type='groupchat'><body>{body}</body></message>")


class IRCClient:
    def __init__(self, port, nick):
        self.port, self.nick = port, nick
        self.lines = asyncio.Queue()
        self.on_line = None

    async def connect(self, channel):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick} 0 * :{self.nick}")
        self.send(f"JOIN {channel}")
        asyncio.get_running_loop().create_task(self._pump())
        await self.wait(lambda l: f" 366 {self.nick} " in l, "end of NAMES")

    async def _pump(self):
        while True:
            line = await self.reader.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith("PING"):
                self.send("PONG" + text[4:])
                continue
            if self.on_line:
                self.on_line(text)
            else:
                await self.lines.put(text)

    def send(self, text):
        self.writer.write((text + "\r\n").encode())

    async def wait(self, match, what, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.nick}: timed out waiting for {what}")
            line = await asyncio.wait_for(self.lines.get(), left)
            if match(line):
                return line


def biboumi_options(settings, users):
    """Per-user options in biboumi's database, before the users join: the IRC port (plain),
    no throttle, and history recording as the scenario says."""
    path = settings.get("biboumi_db")
    if not path:
        return
    db = sqlite3.connect(path, timeout=10)
    for user in users:
        owner = f"{user}@{settings['domain']}"
        db.execute("DELETE FROM ircserveroptions_ WHERE owner_ = ?", (owner,))
        db.execute("INSERT INTO ircserveroptions_ (owner_, server_, pass_, tlsports_, ports_, username_, realname_, verifycert_,"
                   " trustedfingerprint_, encodingout_, encodingin_, maxhistorylength_, address_, nick_, saslpassword_, throttlelimit_)"
                   " VALUES (?, '127.0.0.1', '', '', ?, '', '', 1, '', '', '', 0, '', '', '', -1)",
                   (owner, str(settings["irc_port"])))
        db.execute("DELETE FROM globaloptions_ WHERE owner_ = ?", (owner,))
        db.execute("INSERT INTO globaloptions_ (owner_, maxhistorylength_, recordhistory_, persistent_) VALUES (?, 0, ?, 0)",
                   (owner, 1 if settings.get("history", True) else 0))
    db.commit()
    db.close()


def cpu_ms(pid):
    """The process's CPU time so far, in ms, from the scheduler's nanosecond counts (the
    clock-tick counts in /proc/PID/stat move in 10 ms steps)."""
    if not pid:
        return None
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total / 1e6


def summary(samples):
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


async def latency(settings):
    """One message in flight, `count` each way: IRC -> XMPP client, then XMPP client -> IRC."""
    count = settings["count"]
    user = settings["user"]
    biboumi_options(settings, [user])
    irc = IRCClient(settings["irc_port"], settings["irc_nick"])
    await irc.connect(settings["channel"])
    xmpp = XMPPClient("127.0.0.1", settings["c2s_port"], settings["domain"], user)
    await xmpp.connect()
    room = settings["room"]
    await xmpp.join(room, settings["xmpp_nick"])
    await irc.wait(lambda l: " JOIN " in l and l[1:].startswith(settings["xmpp_nick"] + "!"), "the XMPP user's JOIN")
    await asyncio.sleep(0.5)

    got = asyncio.Queue()

    def on_stanza(stanza):
        if stanza.tag == f"{{{CLIENT}}}message" and stanza.get("type") == "groupchat":
            body = stanza.findtext(f"{{{CLIENT}}}body") or ""
            if body.startswith("ix "):
                got.put_nowait(body)
    xmpp.on_stanza = on_stanza
    results = {"irc_to_xmpp": [], "xmpp_to_irc": []}
    cpu = {}
    warmup = 20
    for i in range(count + warmup):
        if i == warmup:
            cpu_start = cpu_ms(settings.get("pid"))
        start = now_ms()
        irc.send(f"PRIVMSG {settings['channel']} :ix {i}")
        while True:
            body = await asyncio.wait_for(got.get(), TIMEOUT)
            if body == f"ix {i}":
                break
        if i >= warmup:
            results["irc_to_xmpp"].append(now_ms() - start)
    if cpu_start is not None:
        cpu["irc_to_xmpp"] = (cpu_ms(settings["pid"]) - cpu_start) / count
    for i in range(count + warmup):
        if i == warmup:
            cpu_start = cpu_ms(settings.get("pid"))
        start = now_ms()
        xmpp.say(room, f"xi {i}")
        await irc.wait(lambda l: l.endswith(f" :xi {i}") and " PRIVMSG " in l, f"xi {i}")
        if i >= warmup:
            results["xmpp_to_irc"].append(now_ms() - start)
    if cpu_start is not None:
        cpu["xmpp_to_irc"] = (cpu_ms(settings["pid"]) - cpu_start) / count
    result = {key: summary(value) for key, value in results.items()}
    for key, value in cpu.items():
        # The gateway's own CPU per line: what a line costs, apart from waiting.
        result[key]["cpu_ms_per_line"] = value
    return result


async def fanout(settings):
    """`users` XMPP users in the room; `count` lines from one sender, one at a time; the time
    until the last XMPP user has each. The sender is an IRC user, or an XMPP user for
    Prosody's own MUC (the ceiling)."""
    n = settings["users"]
    count = settings["count"]
    prefix = settings["user"]
    names = [f"{prefix}{k}" for k in range(n)]
    biboumi_options(settings, names)
    rss_idle = rss_kib(settings.get("pid"))
    irc = None
    if settings.get("irc_port") and not settings.get("xmpp_sender"):
        irc = IRCClient(settings["irc_port"], settings["irc_nick"])
        await irc.connect(settings["channel"])
    clients = [XMPPClient("127.0.0.1", settings["c2s_port"], settings["domain"], name) for name in names]
    # Logging in is not what is measured (Prosody hashes every password): 20 at a time.
    gate = asyncio.Semaphore(20)

    async def connect(client):
        async with gate:
            await client.connect()
    await asyncio.gather(*(connect(c) for c in clients))
    room = settings["room"]
    join_start = now_ms()
    await asyncio.gather(*(c.join(room, c.user) for c in clients))
    joined_xmpp = now_ms() - join_start
    joined_irc = None
    if irc:
        seen = set()
        while len(seen) < n:
            line = await irc.wait(lambda l: " JOIN " in l, "the XMPP users' JOINs")
            nick = line[1:].split("!")[0]
            if nick in names:
                seen.add(nick)
        joined_irc = now_ms() - join_start
    await asyncio.sleep(1)
    rss_full = rss_kib(settings.get("pid"))

    sender = None
    if settings.get("xmpp_sender"):
        sender = XMPPClient("127.0.0.1", settings["c2s_port"], settings["domain"], prefix + "sender")
        await sender.connect()
        await sender.join(room, "sender")
    waiting = {}
    done = asyncio.Event()

    def receiver(stanza):
        if stanza.tag == f"{{{CLIENT}}}message" and stanza.get("type") == "groupchat":
            body = stanza.findtext(f"{{{CLIENT}}}body") or ""
            if body == waiting.get("body"):
                waiting["left"] -= 1
                if waiting["left"] == 0:
                    done.set()
    for c in clients:
        c.on_stanza = receiver
    samples = []
    for i in range(count + 5):
        done.clear()
        waiting.update(body=f"fan {i}", left=n)
        start = now_ms()
        if sender:
            sender.say(room, f"fan {i}")
        else:
            irc.send(f"PRIVMSG {settings['channel']} :fan {i}")
        await asyncio.wait_for(done.wait(), TIMEOUT)
        if i >= 5:
            samples.append(now_ms() - start)
    return {
        "to_last": summary(samples),
        "join_xmpp_ms": joined_xmpp,
        "join_irc_ms": joined_irc,
        "rss_idle_kib": rss_idle,
        "rss_with_users_kib": rss_full,
    }


async def throughput(settings):
    """Offered rates stepped up, each way: at each rate, `seconds` of numbered lines, paced
    evenly. A rate holds when every line arrives once, in order, the last within 1 s of being
    sent. The highest rate that holds, each way, and every step."""
    user = settings["user"]
    room = settings["room"]
    biboumi_options(settings, [user])
    if not settings.get("xmpp_only"):
        irc = IRCClient(settings["irc_port"], settings["irc_nick"])
        await irc.connect(settings["channel"])
    xmpp = XMPPClient("127.0.0.1", settings["c2s_port"], settings["domain"], user)
    await xmpp.connect()
    await xmpp.join(room, settings["xmpp_nick"])
    if settings.get("xmpp_only"):
        # The ceiling: Prosody's own MUC routing, one XMPP user to another.
        irc = XMPPClient("127.0.0.1", settings["c2s_port"], settings["domain"], user + "s")
        await irc.connect()
        await irc.join(room, settings["xmpp_nick"] + "s")
        directions = ("xmpp_to_xmpp",)
    else:
        await irc.wait(lambda l: " JOIN " in l and l[1:].startswith(settings["xmpp_nick"] + "!"), "the XMPP user's JOIN")
        directions = ("irc_to_xmpp", "xmpp_to_irc")
    await asyncio.sleep(0.5)
    seconds = settings.get("seconds", 2)
    results = {}
    for direction in directions:
        best, steps = 0, []
        for rate in settings.get("rates", [500, 1000, 2000, 4000, 8000, 16000, 32000]):
            n = int(rate * seconds)
            prefix = f"t{direction[0]}{rate} "
            got = []
            complete = asyncio.Event()

            def arrived(text):
                if text.startswith(prefix):
                    got.append(text)
                    if len(got) == n:
                        complete.set()
            if direction == "xmpp_to_xmpp":
                xmpp.on_stanza = lambda s: s.tag == f"{{{CLIENT}}}message" and arrived(s.findtext(f"{{{CLIENT}}}body") or "")
                irc.on_stanza = lambda s: None
            elif direction == "irc_to_xmpp":
                xmpp.on_stanza = lambda s: s.tag == f"{{{CLIENT}}}message" and arrived(s.findtext(f"{{{CLIENT}}}body") or "")
                irc.on_line = lambda l: None
            else:
                irc.on_line = lambda l: " PRIVMSG " in l and arrived(l.split(" :", 1)[1] if " :" in l else "")
                xmpp.on_stanza = lambda s: None
            start = time.monotonic()
            sent = 0
            while sent < n:
                due = min(n, int((time.monotonic() - start) * rate) + 1)
                while sent < due:
                    if direction == "xmpp_to_xmpp":
                        irc.say(room, f"{prefix}{sent}")
                    elif direction == "irc_to_xmpp":
                        irc.send(f"PRIVMSG {settings['channel']} :{prefix}{sent}")
                    else:
                        xmpp.say(room, f"{prefix}{sent}")
                    sent += 1
                await asyncio.sleep(0.001)
            sent_at = time.monotonic()
            try:
                await asyncio.wait_for(complete.wait(), 5)
            except asyncio.TimeoutError:
                pass
            lag_ms = (time.monotonic() - sent_at) * 1000
            in_order = got == [f"{prefix}{k}" for k in range(len(got))]
            holds = len(got) == n and in_order and lag_ms < 1000
            steps.append({"rate": rate, "sent": n, "delivered": len(got), "in_order": in_order, "lag_ms": lag_ms, "holds": holds})
            # Let a backlog drain before the next step, direction or gateway is measured: until
            # nothing has arrived for 2 s (at most 60 s).
            quiet_since, last = time.monotonic(), len(got)
            for _ in range(600):
                await asyncio.sleep(0.1)
                if len(got) != last:
                    quiet_since, last = time.monotonic(), len(got)
                elif time.monotonic() - quiet_since >= 2:
                    break
            if not holds:
                break
            best = rate
        results[direction] = {"best": best, "steps": steps}
    return results


async def large_channel(settings):
    """`users` IRC users in one channel; then one XMPP user joins it through the gateway: the
    time until its join completes (self-presence), the occupants it was shown, and the
    gateway's RSS afterwards."""
    n = settings["users"]
    prefix = settings["irc_nick"]
    user = settings["user"]
    biboumi_options(settings, [user])
    connections = []

    async def drain(reader, writer):
        # Every JOIN of every later user reaches every member: read and drop it, answering
        # PINGs, so the server never sees a full send queue.
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if b"PING" in data:
                for line in data.split(b"\n"):
                    if line.startswith(b"PING"):
                        writer.write(b"PONG" + line[4:].rstrip(b"\r") + b"\r\n")

    gate = asyncio.Semaphore(50)

    async def member(k):
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", settings["irc_port"])
            nick = f"{prefix}{k}"
            writer.write(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN {settings['channel']}\r\n".encode())
            buffer = b""
            while f" 366 {nick} ".encode() not in buffer:
                data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
                if not data:
                    raise RuntimeError(f"{nick}: closed while joining: {buffer[-300:]!r}")
                buffer = buffer[-512:] + data
            connections.append(writer)
            asyncio.get_running_loop().create_task(drain(reader, writer))
    fill_start = now_ms()
    await asyncio.gather(*(member(k) for k in range(n)))
    fill_ms = now_ms() - fill_start
    await asyncio.sleep(settings.get("settle", 5))
    rss_before = rss_kib(settings.get("pid"))
    xmpp = XMPPClient("127.0.0.1", settings["c2s_port"], settings["domain"], user)
    await xmpp.connect()
    occupants = 0
    start = now_ms()
    xmpp.send(f"<presence to='{settings['room']}/{settings['xmpp_nick']}'><x xmlns='{MUC}'><history maxstanzas='0'/></x></presence>")
    while True:
        stanza = await asyncio.wait_for(xmpp.queue.get(), TIMEOUT)
        if stanza is None:
            raise RuntimeError("stream closed while joining")
        if stanza.tag != f"{{{CLIENT}}}presence":
            continue
        if stanza.get("type") == "error":
            raise RuntimeError(f"join refused: {ET.tostring(stanza)[:300]}")
        if "110" in [s.get("code") for s in stanza.iter(f"{{{MUC_USER}}}status")]:
            break
        occupants += 1
    join_ms = now_ms() - start
    await asyncio.sleep(1)
    rss_after = rss_kib(settings.get("pid"))
    for writer in connections:
        writer.close()
    return {"fill_ms": fill_ms, "join_ms": join_ms, "occupants_shown": occupants, "rss_before_kib": rss_before, "rss_after_kib": rss_after}


def main():
    scenario, settings = sys.argv[1], json.loads(sys.argv[2])
    result = asyncio.run(asyncio.wait_for({"latency": latency, "fanout": fanout, "throughput": throughput, "large_channel": large_channel}[scenario](settings), 900))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
