#!/usr/bin/python3
"""Users for Shadowbridge's end-to-end tests, driven over stdin/stdout.

One process hosts any number of XMPP users (slixmpp clients over c2s) and IRC users (plain
sockets that behave like mIRC: NICK/USER, answer PING, raw lines, cp1252 bytes when asked).
Commands arrive as JSON lines on stdin; every event goes out as one JSON line on stdout:
  {"user": "...", "kind": "...", ...}
The test side decides what the events mean; this agent only reports, it never filters.
"""
import asyncio
import json
import sys
import time

import slixmpp
import slixmpp.exceptions
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

MUC_USER = "{http://jabber.org/protocol/muc#user}"


def emit(user, kind, **fields):
    fields.update(user=user, kind=kind, t=time.monotonic())
    sys.stdout.write(json.dumps(fields, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class XMPPUser(slixmpp.ClientXMPP):
    def __init__(self, name, jid, password):
        super().__init__(jid, password)
        self.name = name
        self.register_plugin("xep_0059")
        self.register_plugin("xep_0313")
        self.register_handler(Callback("all presence", StanzaPath("presence"), self.on_presence))
        self.register_handler(Callback("all messages", StanzaPath("message"), self.on_message))
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", lambda *_: emit(self.name, "auth_failed"))
        self.add_event_handler("disconnected", lambda *_: emit(self.name, "disconnected"))

    async def on_start(self, _):
        self.send_presence()
        emit(self.name, "online")

    def on_presence(self, p):
        x = p.xml.find(MUC_USER + "x")
        codes = []
        role = affiliation = None
        if x is not None:
            codes = [int(s.get("code")) for s in x.findall(MUC_USER + "status") if s.get("code", "").isdigit()]
            item = x.find(MUC_USER + "item")
            if item is not None:
                role, affiliation = item.get("role"), item.get("affiliation")
        status = p.xml.find("{jabber:client}status")
        show = p.xml.find("{jabber:client}show")
        error = p.xml.find("{jabber:client}error")
        # The server's echo of this account's own presence (RFC 6121 §4.2.2, to every resource,
        # this one included) arrives when it arrives: it is not room traffic, so it is kept apart.
        kind = "own_presence" if p["from"].bare == self.boundjid.bare else "presence"
        emit(self.name, kind, **{"from": str(p["from"]), "type": p["type"], "codes": codes, "role": role,
             "affiliation": affiliation, "status": status.text if status is not None else None,
             "show": show.text if show is not None else None,
             "error": error[0].tag.split("}")[-1] if error is not None and len(error) else None,
             "xml": str(p)})

    def on_message(self, m):
        body = m.xml.find("{jabber:client}body")
        subject = m.xml.find("{jabber:client}subject")
        emit(self.name, "message", **{"from": str(m["from"]), "type": m["type"],
             "body": body.text if body is not None else None,
             "subject": (subject.text or "") if subject is not None else None, "id": m["id"], "xml": str(m)})


class IRCUser:
    def __init__(self, name):
        self.name = name
        self.writer = None
        self.nick = None
        self.registered = False
        self.nick_retries = 0

    async def connect(self, host, port, nick, username=None, realname=None, caps=None):
        self.nick = nick
        reader, self.writer = await asyncio.open_connection(host, port)
        # An IRCv3 client (caps): asks for them before registering, and ends at once; the
        # server acknowledges what it has. mIRC-like users ask for nothing.
        if caps:
            self.send_raw(f"CAP REQ :{caps}".encode())
        self.send_raw(f"NICK {nick}".encode())
        # A user name takes fewer characters than a nick ("bob[m]" is not one).
        username = username or "".join(c for c in nick if c.isalnum()) or "user"
        self.send_raw(f"USER {username} 0 * :{realname or nick + ' (lab)'}".encode())
        if caps:
            self.send_raw(b"CAP END")
        asyncio.ensure_future(self.read_loop(reader))

    def send_raw(self, data: bytes):
        self.writer.write(data + b"\r\n")

    async def read_loop(self, reader):
        while True:
            line = await reader.readline()
            if not line:
                emit(self.name, "irc_closed")
                return
            raw = line.rstrip(b"\r\n")
            text = raw.decode("utf-8", errors="replace")
            prefix, command, params = parse_irc(text)
            if command == "PING":
                self.send_raw(("PONG :" + (params[-1] if params else "")).encode())
                continue
            if command == "001":
                self.registered = True
            if command == "433" and not self.registered and self.nick_retries < 40:
                # The same user from the previous scenario may not be gone yet: like a person,
                # try the same nick again in a moment (the tests know users by their nicks).
                self.nick_retries += 1
                emit(self.name, "nick_retry", nick=self.nick)
                asyncio.get_running_loop().call_later(0.25, lambda: self.send_raw(f"NICK {self.nick}".encode()))
                continue
            emit(self.name, "irc", prefix=prefix, nick=prefix.split("!")[0] if prefix else None,
                 command=command, params=params, raw=text, raw_hex=raw.hex())


def parse_irc(line):
    prefix = None
    if line.startswith("@"):
        _, _, line = line.partition(" ")
    if line.startswith(":"):
        prefix, _, line = line[1:].partition(" ")
    if " :" in line:
        head, _, trailing = line.partition(" :")
        parts = head.split() + [trailing]
    else:
        parts = line.split()
    return prefix, (parts[0].upper() if parts else ""), parts[1:]


class ScriptedIRCServer:
    """A scripted IRC server, said as such in the tests that use it: it registers every
    client, echoes JOINs with a NAMES reply, and sends whatever raw bytes the test asks to
    the clients in a channel. For inputs a real IRC server never sends (over-long lines)."""

    def __init__(self, name, names, caps="", connections=0, relaymsg="echo"):
        self.name = name
        self.names = names  # extra nicks listed in every channel
        self.caps = caps    # what CAP LS offers (empty: CAP is an unknown command)
        self.clients = {}   # writer -> {"nick":..., "channels": set()}
        self.connections = connections  # more open connections than this are refused (0: any)
        self.relaymsg = relaymsg  # RELAYMSG: "echo" it as the relayed PRIVMSG, or "fail"
        self.history = []   # raw tagged lines a CHATHISTORY request is answered with

    async def start(self):
        server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        state = {"nick": None, "channels": set(), "cap": False}
        if self.connections and len(self.clients) >= self.connections:
            emit(self.name, "scripted_irc_refused", count=len(self.clients))
            writer.write(b"ERROR :Closing Link: Too many connections from your host\r\n")
            await writer.drain()
            writer.close()
            return
        self.clients[writer] = state
        emit(self.name, "scripted_irc_connected", count=len(self.clients))
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                raw = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
                prefix, command, params = parse_irc(raw)
                emit(self.name, "scripted_irc_received", nick=state["nick"], command=command, params=params, raw=raw)
                welcome = f":scripted.test 001 {state['nick']} :Welcome\r\n".encode()
                if command == "CAP" and self.caps and params:
                    sub = params[0].upper()
                    if sub == "LS":
                        state["cap"] = True
                        writer.write(f":scripted.test CAP * LS :{self.caps}\r\n".encode())
                    elif sub == "REQ":
                        writer.write(f":scripted.test CAP * ACK :{params[-1]}\r\n".encode())
                    elif sub == "END" and state["nick"]:
                        writer.write(welcome)
                elif command == "NICK":
                    state["nick"] = params[0]
                elif command == "USER" and not state["cap"]:
                    writer.write(welcome)
                elif command == "JOIN":
                    for channel in params[0].split(","):
                        state["channels"].add(channel.lower())
                        names = " ".join([state["nick"]] + self.names)
                        writer.write(f":{state['nick']}!u@h JOIN {channel}\r\n"
                                     f":scripted.test 353 {state['nick']} = {channel} :{names}\r\n"
                                     f":scripted.test 366 {state['nick']} {channel} :End\r\n".encode())
                elif command == "RELAYMSG" and len(params) >= 3:
                    if self.relaymsg == "fail":
                        writer.write(f":scripted.test FAIL RELAYMSG PRIVS_NEEDED {params[0]} :You need channel operator privileges\r\n".encode())
                    else:
                        line = f"@draft/relaymsg={state['nick']} :{params[1]}!relay@scripted.test PRIVMSG {params[0]} :{params[2]}\r\n".encode()
                        for other, other_state in list(self.clients.items()):
                            if params[0].lower() in other_state["channels"]:
                                other.write(line)
                elif command == "CHATHISTORY" and len(params) >= 2:
                    # Answers every request with the whole scripted history, as one batch:
                    # overlap with what the client saw live is its to drop.
                    out = f":scripted.test BATCH +hist chathistory {params[1]}\r\n"
                    for raw_line in self.history:
                        tags, _, rest = raw_line[1:].partition(" ") if raw_line.startswith("@") else ("", "", raw_line)
                        out += f"@batch=hist{';' + tags if tags else ''} {rest}\r\n"
                    out += ":scripted.test BATCH -hist\r\n"
                    writer.write(out.encode())
                elif command == "PING":
                    writer.write(f":scripted.test PONG scripted.test :{params[-1] if params else ''}\r\n".encode())
                elif command == "QUIT":
                    break
                await writer.drain()
        finally:
            del self.clients[writer]
            writer.close()

    def send(self, channel, data):
        for writer, state in list(self.clients.items()):
            if channel.lower() in state["channels"]:
                writer.write(data)

    def drop(self):
        """Closes every client connection, as a server restart would."""
        for writer in list(self.clients):
            writer.close()


class ScriptedXMPPServer:
    """A scripted XMPP server for one component, said as such in the tests that use it:
    accepts the XEP-0114 handshake without checking it, reports everything the component
    sends, and writes whatever raw bytes the test asks. For malformed streams."""

    def __init__(self, name):
        self.name = name
        self.writer = None
        self.connections = 0

    async def start(self):
        server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        self.connections += 1
        self.writer = writer
        number = self.connections
        emit(self.name, "scripted_xmpp_connected", count=number)
        buffered = b""
        handshaken = False
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buffered += data
            emit(self.name, "scripted_xmpp_received", count=number, data=data.decode("utf-8", errors="replace"))
            if b"<stream:stream" in buffered and b"id=" not in buffered and not handshaken and b"<handshake>" not in buffered:
                writer.write(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                             b"xmlns:stream='http://etherx.jabber.org/streams' id='scripted" + str(number).encode() +
                             b"' from='scripted.test'>")
            if b"</handshake>" in buffered and not handshaken:
                handshaken = True
                writer.write(b"<handshake/>")
                emit(self.name, "scripted_xmpp_handshake", count=number)
            await writer.drain()
        emit(self.name, "scripted_xmpp_closed", count=number)
        writer.close()


async def send_iq(user, iq, tag):
    try:
        result = await iq.send(timeout=10)
        emit(user.name, "iq", type="result", xml=str(result), tag=tag)
    except slixmpp.exceptions.IqError as error:
        emit(user.name, "iq", type="error", error=error.condition, xml=str(error.iq), tag=tag)
    except slixmpp.exceptions.IqTimeout:
        emit(user.name, "iq", type="timeout", tag=tag)


async def mam_iterate(user, cmd):
    # slixmpp's own MAM client (XEP-0313 + XEP-0059 paging), as a stock client reads an archive.
    try:
        bodies, senders = [], []
        async for m in user.plugin["xep_0313"].iterate(jid=slixmpp.JID(cmd["room"]), rsm={"max": cmd.get("max", 10)}):
            inner = m["mam_result"]["forwarded"]["stanza"]
            bodies.append(inner["body"])
            senders.append(str(inner["from"]))
        emit(user.name, "mam", tag=cmd.get("tag"), params=bodies, data="\n".join(senders))
    except Exception as error:
        emit(user.name, "mam", tag=cmd.get("tag"), error=repr(error))


async def main():
    users = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit("agent", "ready")
    while True:
        line = await reader.readline()
        if not line:
            break
        try:
            cmd = json.loads(line)
        except ValueError:
            emit("agent", "bad_command", line=line.decode(errors="replace"))
            continue
        op, name = cmd.get("cmd"), cmd.get("user")
        try:
            if op == "xmpp_connect":
                old = users.get(name)
                if isinstance(old, XMPPUser):
                    # A new session for the same user (after a server restart): the old one
                    # must not reconnect behind the test's back.
                    old.name = name + "~old"
                    old.abort()
                user = XMPPUser(name, cmd["jid"], cmd["password"])
                users[name] = user
                user.connect(address=("127.0.0.1", cmd["port"]), force_starttls=False, disable_starttls=True)
            elif op == "xmpp_join":
                p = users[name].make_presence(pto=f'{cmd["room"]}/{cmd["nick"]}')
                x = slixmpp.xmlstream.ET.Element("{http://jabber.org/protocol/muc}x")
                if cmd.get("password"):
                    secret = slixmpp.xmlstream.ET.SubElement(x, "{http://jabber.org/protocol/muc}password")
                    secret.text = cmd["password"]
                p.append(x)
                p.send()
            elif op == "xmpp_say":
                message = users[name].make_message(mto=cmd["room"], mbody=cmd["body"], mtype="groupchat")
                if cmd.get("id"):  # a known id, so an error without the body still names its line
                    message["id"] = cmd["id"]
                message.send()
            elif op == "xmpp_show":
                users[name].send_presence(pto=f'{cmd["room"]}/{cmd["nick"]}', pshow=cmd.get("show") or None,
                                          pstatus=cmd.get("status") or None)
            elif op == "xmpp_pm":
                users[name].send_message(mto=f'{cmd["room"]}/{cmd["nick"]}', mbody=cmd["body"], mtype="chat")
            elif op == "xmpp_subject":
                users[name].send_message(mto=cmd["room"], msubject=cmd["subject"], mtype="groupchat")
            elif op == "xmpp_leave":
                users[name].send_presence(pto=f'{cmd["room"]}/{cmd["nick"]}', ptype="unavailable",
                                          pstatus=cmd.get("status"))
            elif op == "xmpp_iq":
                # An iq with a raw payload; the answer is reported as kind "iq" with the tag.
                user = users[name]
                iq = user.make_iq(ito=cmd["to"], itype=cmd.get("type", "get"))
                iq.append(slixmpp.xmlstream.ET.fromstring(cmd["payload"]))
                asyncio.ensure_future(send_iq(user, iq, cmd.get("tag")))
            elif op == "xmpp_mam":
                asyncio.ensure_future(mam_iterate(users[name], cmd))
            elif op == "xmpp_raw":
                users[name].send_raw(cmd["xml"])
            elif op == "irc_connect":
                user = IRCUser(name)
                users[name] = user
                await user.connect("127.0.0.1", cmd["port"], cmd["nick"], cmd.get("username"), cmd.get("realname"), cmd.get("caps"))
            elif op == "irc_send":
                data = bytes.fromhex(cmd["hex"]) if "hex" in cmd else cmd["line"].encode("utf-8")
                users[name].send_raw(data)
            elif op == "scripted_irc_server":
                server = ScriptedIRCServer(name, cmd.get("names", []), cmd.get("caps", ""), cmd.get("connections", 0), cmd.get("relaymsg", "echo"))
                users[name] = server
                emit(name, "scripted_irc_listening", port=await server.start())
            elif op == "scripted_irc_send":
                users[name].send(cmd["channel"], bytes.fromhex(cmd["hex"]))
            elif op == "scripted_irc_history":
                users[name].history = cmd["lines"]
            elif op == "scripted_irc_drop":
                users[name].drop()
            elif op == "scripted_xmpp_server":
                server = ScriptedXMPPServer(name)
                users[name] = server
                emit(name, "scripted_xmpp_listening", port=await server.start())
            elif op == "scripted_xmpp_send":
                users[name].writer.write(cmd["data"].encode())
            elif op == "quit":
                for user in users.values():
                    if isinstance(user, XMPPUser):
                        user.disconnect()
                    elif isinstance(user, IRCUser) and user.writer:
                        user.writer.close()
                await asyncio.sleep(0.2)
                break
            else:
                emit("agent", "bad_command", line=line.decode(errors="replace"))
                continue
            emit("agent", "done", cmd=op, target=name)
        except Exception as error:  # report, never die: the test decides
            emit("agent", "command_failed", cmd=op, target=name, error=repr(error))
    emit("agent", "bye")


if __name__ == "__main__":
    asyncio.run(main())
