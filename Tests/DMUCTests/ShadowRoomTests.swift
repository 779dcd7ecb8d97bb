import DMUC
import Testing
import XMPPCore

/// `ShadowRoom` as a state machine, fed with the stanzas a master sends.
@Suite("ShadowRoom")
struct ShadowRoomTests {
    static let room = JID("ops@rooms.test")!
    static let shadowJID = JID("#ops%net@irc.test")!
    static let carol = JID("u1%net@irc.test/irc")!
    static let dave = JID("u2%net@irc.test/irc")!
    static let alice = JID("alice@xmpp.test/phone")!
    static let erin = JID("u9%net@irc.test/irc")!

    var shadow = ShadowRoom(masterRoom: room, jid: shadowJID)

    static func sent(_ actions: [ShadowRoom.Action]) -> [XMLElement] {
        actions.compactMap { if case .send(let s) = $0 { s } else { nil } }
    }

    static func presence(nick: String, real: JID, seq: UInt64? = nil, unavailable: Bool = false) -> XMLElement {
        var p = XMLElement.stanza(.presence, from: room.with(resource: nick), to: shadowJID, type: unavailable ? "unavailable" : nil)
        p.append(LinkElements.fmuc(from: real))
        if let seq { p.append(LinkElements.seq(seq, epoch: "e1")) }
        return p
    }

    static func subject(seq: UInt64) -> XMLElement {
        .stanza(.message, from: room, to: shadowJID, type: "groupchat", children: [
            .text("subject", namespace: NS.component, ""), LinkElements.sync(epoch: "e1", rid: "r", seq: seq),
        ])
    }

    static func message(nick: String, real: JID, body: String, seq: UInt64, origin: String? = nil) -> XMLElement {
        var m = XMLElement.stanza(.message, from: room.with(resource: nick), to: shadowJID, type: "groupchat", children: [.text("body", namespace: NS.component, body)])
        if let origin { m.append(LinkElements.originID(origin)) }
        m.append(LinkElements.fmuc(from: real))
        m.append(LinkElements.seq(seq, epoch: "e1"))
        return m
    }

    /// carol federates; alice is in the room already; the burst ends at seq 3.
    mutating func federate() {
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        _ = shadow.receive(Self.presence(nick: "Alice", real: Self.alice))
        _ = shadow.receive(Self.presence(nick: "carol", real: Self.carol))
        _ = shadow.receive(Self.subject(seq: 3))
    }

    @Test("a line the master refuses (too fast) is reported for its IRC author with the reason and the text; no echo is awaited for it")
    mutating func lineRefused() {
        federate()
        let sent = Self.sent(shadow.ircMessage(nick: "carol", body: "hello", originID: "o-1"))
        #expect(sent.count == 1)
        let refusal = sent[0].errorReply(type: "wait", condition: "policy-violation", text: "you are sending too fast")
        #expect(shadow.receive(refusal) == [.lineRefused(nick: "carol", condition: "policy-violation", text: "you are sending too fast", body: "hello")])
        // Had it been awaited still, a late echo would be taken for ours and not relayed; it is
        // a remote line of carol's now, which the shadow drops as its own user's.
        #expect(shadow.receive(Self.message(nick: "carol", real: Self.carol, body: "hello", seq: 4, origin: "o-1")).allSatisfy { if case .note(.echoMatched) = $0 { false } else { true } })
    }

    @Test("the first IRC user federates with <link/> and no history; later users wait for the burst")
    mutating func federation() {
        let first = Self.sent(shadow.ircJoined(nick: "carol", realJID: Self.carol))
        #expect(first.count == 1)
        #expect(first[0]["to"] == "ops@rooms.test/carol" && first[0]["from"] == "#ops%net@irc.test/carol")
        #expect(first[0].child("link", namespace: NS.link) != nil)
        #expect(LinkElements.fmucFrom(first[0]) == Self.carol)
        #expect(first[0].child("x", namespace: NS.muc)?.child("history", namespace: NS.muc)?["maxstanzas"] == "0")
        #expect(shadow.ircJoined(nick: "dave", realJID: Self.dave).isEmpty)

        #expect(shadow.receive(Self.presence(nick: "Alice", real: Self.alice)) == [.remoteJoined(.init(nick: "Alice", realJID: Self.alice))])
        #expect(shadow.receive(Self.presence(nick: "carol", real: Self.carol)).isEmpty)  // her ack
        let end = shadow.receive(Self.subject(seq: 3))
        #expect(shadow.isFederated)
        let joins = Self.sent(end)
        #expect(joins.count == 1 && joins[0]["to"] == "ops@rooms.test/dave" && joins[0].child("link", namespace: NS.link) == nil)
    }

    @Test("after a restart, the burst's users of this node who are not in the channel any more leave once; those who are stay untouched")
    mutating func ghostsLeave() {
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        _ = shadow.receive(Self.presence(nick: "Alice", real: Self.alice))
        #expect(shadow.receive(Self.presence(nick: "carol", real: JID("old1%net@irc.test/irc")!)).isEmpty)
        #expect(shadow.receive(Self.presence(nick: "dave", real: Self.dave)).isEmpty)
        // Another network's user in the same room is not ours to remove.
        _ = shadow.receive(Self.presence(nick: "erin", real: JID("u3%other@irc.test/irc")!))
        let sent = Self.sent(shadow.receive(Self.subject(seq: 3)))
        #expect(sent.count == 1)
        #expect(sent.first?["type"] == "unavailable" && sent.first?["to"] == "ops@rooms.test/dave" && sent.first.flatMap(LinkElements.fmucFrom) == Self.dave)
        #expect(sent.first?.child("status", namespace: NS.component)?.text == "Left the IRC channel")
    }

    @Test("after a restart a user the room shows as dave|irc takes that nick again, and one who changed nick during the burst is not taken for a ghost (found in review)")
    mutating func suffixedAndRenamedAreNotGhosts() {
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        _ = shadow.ircJoined(nick: "dave", realJID: Self.dave)
        _ = shadow.ircNickChanged(from: "carol", to: "carol2")  // her federating join is already out
        _ = shadow.receive(Self.presence(nick: "dave", real: Self.alice))  // an XMPP dave
        _ = shadow.receive(Self.presence(nick: "dave|irc", real: JID("old2%net@irc.test/irc")!))
        _ = shadow.receive(Self.presence(nick: "carol", real: Self.carol))
        let sent = Self.sent(shadow.receive(Self.subject(seq: 3)))
        #expect(!sent.contains { $0["type"] == "unavailable" }, "\(sent.map { $0.serialized(parentNamespace: NS.component) })")
        #expect(sent.contains { $0["to"] == "ops@rooms.test/dave|irc" && $0["type"] == nil && LinkElements.fmucFrom($0) == Self.dave })
        #expect(shadow.roomNick(ofLocal: "dave") == "dave|irc")
    }

    @Test("catching up after a restart: live lines wait for the missed ones, and the position moves with what was relayed (found in review)")
    mutating func catchUpInOrder() throws {
        shadow.resume(epoch: "e1", seq: 5)
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        _ = shadow.receive(Self.presence(nick: "carol", real: Self.carol))
        let end = Self.sent(shadow.receive(Self.subject(seq: 8)))
        let resyncID = try #require(end.first { $0.name == "iq" }?["id"])
        #expect(shadow.position?.seq == 5)
        // A live line overtakes the replay: it waits.
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "live", seq: 9)).isEmpty)
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "missed 6", seq: 6)) == [.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "missed 6")])
        #expect(shadow.position?.seq == 6)
        _ = shadow.receive(Self.presence(nick: "bob", real: JID("bob@xmpp.test/x")!, seq: 7))
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "missed 8", seq: 8)) == [.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "missed 8")])
        #expect(shadow.position?.seq == 8)
        // The replay is over: the live line follows, and the position with it.
        let answer = XMLElement.stanza(.iq, from: Self.room, to: Self.shadowJID, type: "result", id: resyncID, children: [LinkElements.replayed(3)])
        #expect(shadow.receive(answer).contains(.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "live")))
        #expect(shadow.position?.seq == 9)
    }

    @Test("the master restarted meanwhile (its burst has a new epoch): everything of the new epoch was missed, so the catch-up asks from seq 1 and relays the lines, not the roster (found by the master SIGKILL scenario)")
    mutating func catchUpAfterMasterRestart() throws {
        shadow.resume(epoch: "e0", seq: 40)
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        _ = shadow.receive(Self.presence(nick: "carol", real: Self.carol))
        let end = Self.sent(shadow.receive(Self.subject(seq: 3)))
        let resync = try #require(end.first { $0.name == "iq" })
        #expect(resync.child("resync", namespace: NS.link)?["epoch"] == "e1" && resync.child("resync", namespace: NS.link)?["from-seq"] == "1")
        #expect(shadow.receive(Self.presence(nick: "Alice", real: Self.alice, seq: 1)).isEmpty, "the burst showed the roster already")
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "said before we were back", seq: 2)) == [.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "said before we were back")])
        let answer = XMLElement.stanza(.iq, from: Self.room, to: Self.shadowJID, type: "result", id: resync["id"], children: [LinkElements.replayed(3)])
        _ = shadow.receive(answer)
        #expect(shadow.position.map { "\($0.epoch) \($0.seq)" } == "e1 3")
    }

    @Test("a restarted bridge resumes from its stored position: the federation carries it, and the lines said since are asked for after the burst")
    mutating func resumesFromStoredPosition() {
        shadow.resume(epoch: "e1", seq: 5)
        let first = Self.sent(shadow.ircJoined(nick: "carol", realJID: Self.carol))
        let link = first.first?.child("link", namespace: NS.link)
        #expect(link?["epoch"] == "e1" && link?["last-seq"] == "5")
        #expect(shadow.position == nil, "not federated yet")
        _ = shadow.receive(Self.presence(nick: "carol", real: Self.carol))
        let end = Self.sent(shadow.receive(Self.subject(seq: 8)))
        let resync = end.first { $0.name == "iq" }?.child("resync", namespace: NS.link)
        #expect(resync?["epoch"] == "e1" && resync?["from-seq"] == "6")
        #expect(shadow.position.map { "\($0.epoch) \($0.seq)" } == "e1 5", "where IRC stands, until the catch-up is over")
        // The missed line, replayed with its old number, reaches IRC once.
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "while you were away", seq: 7)) == [.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "while you were away")])
        #expect(shadow.position.map { "\($0.epoch) \($0.seq)" } == "e1 7")
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "while you were away", seq: 7)) == [.note(.duplicateDropped(seq: 7))])
    }

    @Test("remote lines reach IRC once: duplicates by seq are dropped, a gap is noted and held for a resync")
    mutating func sequence() {
        federate()
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "hi", seq: 4)) == [.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "hi")])
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "hi", seq: 4)) == [.note(.duplicateDropped(seq: 4))])
        let gap = shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "later", seq: 7))
        #expect(gap.first == .note(.seqGap(expected: 5, got: 7)))
        #expect(!gap.contains(.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "later")), "held until 5 and 6 arrive (LinkUpkeepTests)")
    }

    @Test("an IRC line is submitted with an origin-id; its echo is an ack, never relayed back to IRC")
    mutating func echo() {
        federate()
        let sent = Self.sent(shadow.ircMessage(nick: "carol", body: "from irc", originID: "o-1"))
        #expect(sent.count == 1 && sent[0]["to"] == "ops@rooms.test" && sent[0]["type"] == "groupchat")
        #expect(LinkElements.originID(of: sent[0]) == "o-1" && LinkElements.fmucFrom(sent[0]) == Self.carol)
        #expect(shadow.receive(Self.message(nick: "carol", real: Self.carol, body: "from irc", seq: 4, origin: "o-1")) == [.note(.echoMatched)])
    }

    @Test("lines said before the burst are held and submitted after it, in order")
    mutating func held() {
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        #expect(shadow.ircMessage(nick: "carol", body: "one", originID: "o-1").isEmpty)
        #expect(shadow.ircMessage(nick: "carol", body: "two", originID: "o-2").isEmpty)
        let sent = Self.sent(shadow.receive(Self.subject(seq: 1)))
        #expect(sent.map { $0.child("body", namespace: NS.component)?.text } == ["one", "two"])
    }

    @Test("a refused federating user is told, and the next user federates instead (flow I)")
    mutating func refused() {
        let presence = Self.sent(shadow.ircJoined(nick: "carol", realJID: Self.carol))[0]
        _ = shadow.ircJoined(nick: "dave", realJID: Self.dave)
        var error = presence.errorReply(type: "auth", condition: "forbidden", text: "banned")
        error["from"] = "ops@rooms.test/carol"
        let actions = shadow.receive(error)
        #expect(actions.first == .localRefused(nick: "carol", condition: "forbidden", text: "banned"))
        let retry = Self.sent(actions)
        #expect(retry.count == 1 && retry[0]["to"] == "ops@rooms.test/dave" && retry[0].child("link", namespace: NS.link) != nil)
        #expect(shadow.ircMessage(nick: "carol", body: "ignored", originID: "o").isEmpty)
    }

    @Test("a nick the room has already: one retry with the suffix, under which she speaks; a second conflict refuses her (flow I)")
    mutating func collision() {
        federate()
        let join = Self.sent(shadow.ircJoined(nick: "dave", realJID: Self.dave))[0]
        var error = join.errorReply(type: "cancel", condition: "conflict", text: "taken")
        error["from"] = "ops@rooms.test/dave"
        let actions = shadow.receive(error)
        let retry = Self.sent(actions)
        #expect(retry.count == 1 && retry[0]["to"] == "ops@rooms.test/dave|irc" && LinkElements.fmucFrom(retry[0]) == Self.dave)
        #expect(actions.count == 1, "she hears her room nick once the room shows her under it, not before: \(actions)")
        #expect(shadow.roomNick(ofLocal: "DAVE") == "dave|irc")
        #expect(shadow.receive(Self.presence(nick: "dave|irc", real: Self.dave, seq: 4)) == [.localRenamed(nick: "dave", roomNick: "dave|irc")])
        #expect(shadow.receive(Self.presence(nick: "dave|irc", real: Self.dave, seq: 5)).isEmpty, "told once")
        let line = Self.sent(shadow.ircMessage(nick: "dave", body: "hi", originID: "o1"))
        #expect(line.first?["from"] == "#ops%net@irc.test/dave|irc")

        var again = retry[0].errorReply(type: "cancel", condition: "conflict", text: "taken too")
        again["from"] = "ops@rooms.test/dave|irc"
        #expect(shadow.receive(again).first == .localRefused(nick: "dave", condition: "conflict", text: "taken too"))
        #expect(shadow.ircMessage(nick: "dave", body: "ignored", originID: "o2").isEmpty)

        // Both nicks taken: she hears only that she was refused, never a room nick she has not.
        var erinTaken = Self.sent(shadow.ircJoined(nick: "erin", realJID: Self.erin))[0].errorReply(type: "cancel", condition: "conflict")
        erinTaken["from"] = "ops@rooms.test/erin"
        let retried = shadow.receive(erinTaken)
        #expect(!retried.contains { if case .localRenamed = $0 { true } else { false } })
        var refused = Self.sent(retried)[0].errorReply(type: "cancel", condition: "conflict")
        refused["from"] = "ops@rooms.test/erin|irc"
        let refusal = shadow.receive(refused)
        #expect(refusal.first == .localRefused(nick: "erin", condition: "conflict", text: nil))
        #expect(!refusal.contains { if case .localRenamed = $0 { true } else { false } })

        // The federating user herself: she federates again under the suffix.
        var fresh = ShadowRoom(masterRoom: Self.room, jid: Self.shadowJID, collisionSuffix: "[i]")
        let first = Self.sent(fresh.ircJoined(nick: "carol", realJID: Self.carol))[0]
        var taken = first.errorReply(type: "cancel", condition: "conflict")
        taken["from"] = "ops@rooms.test/carol"
        let refederate = Self.sent(fresh.receive(taken))
        #expect(refederate.count == 1 && refederate[0]["to"] == "ops@rooms.test/carol[i]" && refederate[0].child("link", namespace: NS.link) != nil)
    }

    @Test("an unreachable master fails federation; a retry sends it again")
    mutating func unreachable() {
        let presence = Self.sent(shadow.ircJoined(nick: "carol", realJID: Self.carol))[0]
        var error = presence.errorReply(type: "cancel", condition: "service-unavailable")
        error["from"] = "ops@rooms.test/carol"
        #expect(shadow.receive(error) == [.federationFailed(condition: "service-unavailable")])
        #expect(Self.sent(shadow.retryFederation()).count == 1)
    }

    @Test("a re-federation burst is diffed: only occupants who left meanwhile are removed")
    mutating func refederationDiff() {
        federate()
        let bob = JID("bob@xmpp.test/x")!
        _ = shadow.receive(Self.presence(nick: "Bob", real: bob, seq: 4))
        var left = XMLElement.stanza(.presence, from: Self.room, to: Self.shadowJID, type: "unavailable")
        left.append(LinkElements.left())
        #expect(shadow.receive(left).isEmpty)
        #expect(!shadow.isFederated)
        _ = shadow.ircLeft(nick: "carol", reason: nil)
        _ = shadow.ircJoined(nick: "dave", realJID: Self.dave)
        #expect(shadow.receive(Self.presence(nick: "Alice", real: Self.alice)).isEmpty)  // still there: no new join on IRC
        let end = shadow.receive(Self.subject(seq: 9))
        #expect(end.contains(.remoteLeft(.init(nick: "Bob", realJID: bob), reason: nil)))
        #expect(!end.contains { if case .remoteLeft(let o, _) = $0 { o.nick == "Alice" } else { false } })
    }

    @Test("stanzas not from the master room are ignored")
    mutating func foreign() {
        federate()
        var m = Self.message(nick: "Alice", real: Self.alice, body: "spoof", seq: 4)
        m["from"] = "other@rooms.test/Alice"
        #expect(shadow.receive(m).isEmpty)
    }

    @Test("an IRC NICK is one presence under the new nick with the same real JID")
    mutating func ircNick() {
        federate()
        let sent = Self.sent(shadow.ircNickChanged(from: "carol", to: "caro"))
        #expect(sent.count == 1 && sent[0]["to"] == "ops@rooms.test/caro" && sent[0]["from"] == "#ops%net@irc.test/caro" && sent[0]["type"] == nil)
        #expect(LinkElements.fmucFrom(sent[0]) == Self.carol)
        let line = Self.sent(shadow.ircMessage(nick: "caro", body: "hi", originID: "o"))
        #expect(line.first?["from"] == "#ops%net@irc.test/caro")
    }

    @Test("a remote 303 is one nick change on IRC, and the presence that follows is not a join")
    mutating func remoteNick() {
        federate()
        var gone = Self.presence(nick: "Alice", real: Self.alice, seq: 4, unavailable: true)
        var x = XMLElement("x", namespace: NS.mucUser)
        x.append(XMLElement("item", namespace: NS.mucUser, attributes: ["nick": "Alicia", "role": "participant", "affiliation": "none"]))
        x.append(XMLElement("status", namespace: NS.mucUser, attributes: ["code": "303"]))
        gone.append(x)
        #expect(shadow.receive(gone) == [.remoteNickChanged(.init(nick: "Alice", realJID: Self.alice), newNick: "Alicia")])
        #expect(shadow.receive(Self.presence(nick: "Alicia", real: Self.alice, seq: 5)).isEmpty)
        #expect(shadow.remoteOccupants.map(\.nick) == ["Alicia"])
    }

    @Test("topics and subjects cross as subjects: IRC TOPIC is submitted, a remote subject is an action")
    mutating func subjects() {
        federate()
        let sent = Self.sent(shadow.ircTopic(nick: "carol", topic: "release day"))
        #expect(sent.count == 1 && sent[0].child("subject", namespace: NS.component)?.text == "release day" && sent[0].child("body", namespace: NS.component) == nil)
        var subject = XMLElement.stanza(.message, from: Self.room.with(resource: "Alice"), to: Self.shadowJID, type: "groupchat", children: [.text("subject", namespace: NS.component, "new subject")])
        subject.append(LinkElements.fmuc(from: Self.alice))
        subject.append(LinkElements.seq(4, epoch: "e1"))
        #expect(shadow.receive(subject) == [.remoteSubject(.init(nick: "Alice", realJID: Self.alice), subject: "new subject")])
    }

    @Test("a kick on IRC carries <removed/> with the kicker and the reason")
    mutating func ircKick() {
        federate()
        let sent = Self.sent(shadow.ircLeft(nick: "carol", reason: "spam", kickedBy: "op"))
        let removed = sent.first?.child("removed", namespace: NS.link)
        #expect(sent.first?["type"] == "unavailable" && removed?["kind"] == "kick" && removed?["by"] == "op" && removed?["reason"] == "spam")
    }

    @Test("private messages both ways: an IRC PRIVMSG to a puppet is a chat to the occupant; a chat to our user is an action")
    mutating func privateMessages() {
        federate()
        let sent = Self.sent(shadow.ircPrivateMessage(nick: "carol", toRoomNick: "Alice", body: "psst"))
        #expect(sent.count == 1 && sent[0]["type"] == "chat" && sent[0]["to"] == "ops@rooms.test/Alice" && LinkElements.fmucFrom(sent[0]) == Self.carol)
        var pm = XMLElement.stanza(.message, from: Self.room.with(resource: "Alice"), to: Self.shadowJID.with(resource: "carol"), type: "chat", children: [.text("body", namespace: NS.component, "hi")])
        pm.append(LinkElements.fmuc(from: Self.alice))
        #expect(shadow.receive(pm) == [.privateMessage(from: .init(nick: "Alice", realJID: Self.alice), toLocalNick: "carol", body: "hi")])
        #expect(shadow.shares(ircNick: "carol", withRemote: "alice"))
    }

    @Test("away: show away/xa/dnd is an away action with the status, once per change; available again clears it")
    mutating func away() {
        federate()
        var p = Self.presence(nick: "Alice", real: Self.alice, seq: 4)
        p.append(.text("show", namespace: NS.component, "away"))
        p.append(.text("status", namespace: NS.component, "lunch"))
        #expect(shadow.receive(p) == [.remoteAway(.init(nick: "Alice", realJID: Self.alice), message: "lunch")])
        var again = p
        again.removeElements { $0.name == "seq" }
        again.append(LinkElements.seq(5, epoch: "e1"))
        #expect(shadow.receive(again).isEmpty, "same away message: nothing to do")
        #expect(shadow.receive(Self.presence(nick: "Alice", real: Self.alice, seq: 6)) == [.remoteAway(.init(nick: "Alice", realJID: Self.alice), message: nil)])
        var dnd = Self.presence(nick: "Alice", real: Self.alice, seq: 7)
        dnd.append(.text("show", namespace: NS.component, "dnd"))
        #expect(shadow.receive(dnd) == [.remoteAway(.init(nick: "Alice", realJID: Self.alice), message: "dnd")])
    }

    @Test("roles from channel modes: the join carries the role; a change is one presence; no change, no stanza")
    mutating func roles() {
        let join = Self.sent(shadow.ircJoined(nick: "carol", realJID: Self.carol, role: "moderator"))
        #expect(join.first?.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["role"] == "moderator")
        _ = shadow.receive(Self.subject(seq: 1))
        #expect(shadow.ircRoleChanged(nick: "carol", role: "moderator").isEmpty)
        let change = Self.sent(shadow.ircRoleChanged(nick: "carol", role: "participant"))
        #expect(change.count == 1 && change[0].child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["role"] == "participant")
        #expect(LinkElements.fmucFrom(change[0]) == Self.carol)
    }

    static func left() -> XMLElement {
        var left = XMLElement.stanza(.presence, from: room, to: shadowJID, type: "unavailable")
        left.append(LinkElements.left())
        return left
    }

    @Test("a quick /cycle by the only IRC user: <left/> with her join in flight waits for the new burst (found in review)")
    mutating func quickCycle() {
        federate()
        _ = shadow.ircLeft(nick: "carol", reason: "cycling")
        let rejoin = Self.sent(shadow.ircJoined(nick: "carol", realJID: Self.carol))
        #expect(rejoin.count == 1)
        #expect(shadow.receive(Self.left()).isEmpty)
        // The master federates the node again with her join: a burst, then the subject.
        #expect(shadow.receive(Self.presence(nick: "Alice", real: Self.alice)).isEmpty)
        #expect(shadow.receive(Self.presence(nick: "carol", real: Self.carol)).isEmpty)
        _ = shadow.receive(Self.subject(seq: 9))
        #expect(shadow.isFederated)
        #expect(shadow.receive(Self.message(nick: "Alice", real: Self.alice, body: "welcome back", seq: 10)) == [.remoteMessage(.init(nick: "Alice", realJID: Self.alice), body: "welcome back")])
    }

    @Test("another network's IRC user in the same room is remote, not ours (found in review)")
    mutating func otherNetwork() {
        federate()
        let oftc = JID("u9%oftc@irc.test/irc")!
        #expect(shadow.receive(Self.presence(nick: "zed", real: oftc, seq: 4)) == [.remoteJoined(.init(nick: "zed", realJID: oftc))])
        #expect(shadow.receive(Self.message(nick: "zed", real: oftc, body: "from oftc", seq: 5)) == [.remoteMessage(.init(nick: "zed", realJID: oftc), body: "from oftc")])
    }

    @Test("a refused nick change takes the user out of the room (no ghost); a nick change during federation is sent (found in review)")
    mutating func refusedNickChange() {
        federate()
        let change = Self.sent(shadow.ircNickChanged(from: "carol", to: "Alice"))[0]
        var error = change.errorReply(type: "cancel", condition: "conflict", text: "taken")
        error["from"] = "ops@rooms.test/Alice"
        // Once more with the suffix (flow I), then out.
        let suffixed = Self.sent(shadow.receive(error))
        #expect(suffixed.count == 1 && suffixed[0]["to"] == "ops@rooms.test/Alice|irc" && suffixed[0]["type"] == nil)
        error = suffixed[0].errorReply(type: "cancel", condition: "conflict", text: "taken")
        error["from"] = "ops@rooms.test/Alice|irc"
        let actions = shadow.receive(error)
        let out = Self.sent(actions)
        #expect(out.count == 1 && out[0]["type"] == "unavailable" && LinkElements.fmucFrom(out[0]) == Self.carol)

        var fresh = ShadowRoom(masterRoom: Self.room, jid: Self.shadowJID)
        _ = fresh.ircJoined(nick: "dave", realJID: Self.dave)
        #expect(Self.sent(fresh.ircNickChanged(from: "dave", to: "david")).first?["to"] == "ops@rooms.test/david")
    }

    @Test("replies, corrections, links and reactions from XMPP: the quote fallback removed, the author named as IRC knows them, only added reactions told")
    mutating func modernLines() throws {
        federate()
        // carol's line comes back with the room's stanza-id: replies and reactions may name it.
        let said = Self.sent(shadow.ircMessage(nick: "carol", body: "lunch at noon?", originID: "o1"))[0]
        var echo = Self.message(nick: "carol", real: Self.carol, body: "lunch at noon?", seq: 4, origin: "o1")
        echo.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": "s-carol", "by": "ops@rooms.test"]))
        #expect(said["from"] == "#ops%net@irc.test/carol")
        #expect(shadow.receive(echo) == [.note(.echoMatched)])

        let alice = ShadowRoom.RemoteOccupant(nick: "Alice", realJID: Self.alice)
        func line(_ seq: UInt64, _ body: String?, _ extra: [XMLElement]) -> XMLElement {
            var m = Self.message(nick: "Alice", real: Self.alice, body: body ?? "", seq: seq)
            if body == nil { m.removeElements { $0.name == "body" } }
            for e in extra { m.append(e) }
            return m
        }
        // XEP-0461 with its quote fallback (scalars 0..<18: "> lunch at noon?\n").
        let fallback = XMLElement("fallback", namespace: "urn:xmpp:fallback:0", attributes: ["for": "urn:xmpp:reply:0"], children: [
            .element(XMLElement("body", namespace: "urn:xmpp:fallback:0", attributes: ["start": "0", "end": "17"])),
        ])
        let reply = XMLElement("reply", namespace: "urn:xmpp:reply:0", attributes: ["to": "ops@rooms.test/carol", "id": "s-carol"])
        #expect(shadow.receive(line(5, "> lunch at noon?\nyes, see you", [reply, fallback])) == [.remoteLine(alice, .reply(to: .local(ircNick: "carol"), text: "yes, see you"))])
        // XEP-0308: the whole corrected line.
        let replace = XMLElement("replace", namespace: "urn:xmpp:message-correct:0", attributes: ["id": "m5"])
        #expect(shadow.receive(line(6, "yes, see you there", [replace])) == [.remoteLine(alice, .correction(text: "yes, see you there"))])
        // XEP-0066 (how XEP-0363 uploads are shared): the link is the line, or is added to it.
        let oob = XMLElement("x", namespace: "jabber:x:oob", children: [.element(.text("url", namespace: "jabber:x:oob", "https://up.example/menu.pdf"))])
        #expect(shadow.receive(line(7, "the menu", [oob])) == [.remoteMessage(alice, body: "the menu https://up.example/menu.pdf")])
        #expect(shadow.receive(line(8, "https://up.example/menu.pdf", [oob])) == [.remoteMessage(alice, body: "https://up.example/menu.pdf")])
        // XEP-0444: the fallback body is not a line; only reactions added since the last are told.
        func reactions(_ emoji: [String]) -> XMLElement {
            XMLElement("reactions", namespace: "urn:xmpp:reactions:0", attributes: ["id": "s-carol"], children: emoji.map { .element(.text("reaction", namespace: "urn:xmpp:reactions:0", $0)) })
        }
        #expect(shadow.receive(line(9, "👍", [reactions(["👍"])])) == [.remoteLine(alice, .reaction(emoji: ["👍"], to: .local(ircNick: "carol"), snippet: "lunch at noon?"))])
        #expect(shadow.receive(line(10, nil, [reactions(["👍", "🎉"])])) == [.remoteLine(alice, .reaction(emoji: ["🎉"], to: .local(ircNick: "carol"), snippet: "lunch at noon?"))])
        #expect(shadow.receive(line(11, nil, [reactions(["🎉"])])).isEmpty)
    }

    @Test("replies name the same line on both sides: an IRC msgid reply becomes XEP-0461 by the room's stanza-id, an XMPP reply carries the msgid IRC gave the line")
    mutating func repliesByMsgID() throws {
        federate()
        let alice = ShadowRoom.RemoteOccupant(nick: "Alice", realJID: Self.alice)
        // carol's line, whose origin-id is the IRC server's msgid, comes back with a stanza-id.
        _ = shadow.ircMessage(nick: "carol", body: "lunch at noon?", originID: "irc-1", isIRCMsgID: true)
        var echo = Self.message(nick: "carol", real: Self.carol, body: "lunch at noon?", seq: 4, origin: "irc-1")
        echo.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": "s-carol", "by": "ops@rooms.test"]))
        #expect(shadow.receive(echo) == [.note(.echoMatched)])
        // Alice's line: the action names it by the room's stanza-id; IRC then gives it irc-2.
        var said = Self.message(nick: "Alice", real: Self.alice, body: "yes", seq: 5, origin: "a-1")
        said.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": "s-alice", "by": "ops@rooms.test"]))
        #expect(shadow.receive(said) == [.remoteMessage(alice, body: "yes", lineID: "s-alice")])
        shadow.noteIRCMsgID("irc-2", forLine: "s-alice")
        shadow.noteIRCMsgID("irc-9", forLine: "s-alice")  // a later piece of the same line: the first stays

        // An IRCv3 client's replies, to Alice's line and to carol's: XEP-0461 to the author, by stanza-id.
        for (msgid, id, to) in [("irc-2", "s-alice", "ops@rooms.test/Alice"), ("irc-1", "s-carol", "ops@rooms.test/carol")] {
            let sent = Self.sent(shadow.ircMessage(nick: "carol", body: "noted", originID: "o-\(msgid)", inReplyTo: msgid))
            let reply = try #require(sent.first?.child("reply", namespace: "urn:xmpp:reply:0"))
            #expect(reply["id"] == id && reply["to"] == to)
        }
        // carol's line seen again in a replay (its echo no longer awaited) is still found by
        // its origin-id, which is its msgid.
        var replayed = Self.message(nick: "carol", real: Self.carol, body: "from the replay", seq: 6, origin: "irc-3")
        replayed.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": "s-3", "by": "ops@rooms.test"]))
        #expect(shadow.receive(replayed).isEmpty)
        let late = Self.sent(shadow.ircMessage(nick: "carol", body: "see above", originID: "o-3", inReplyTo: "irc-3"))
        #expect(late.first?.child("reply", namespace: "urn:xmpp:reply:0")?["id"] == "s-3")
        // An unknown msgid names nothing: a plain line.
        #expect(Self.sent(shadow.ircMessage(nick: "carol", body: "plain", originID: "o-x", inReplyTo: "irc-404")).first?.child("reply", namespace: "urn:xmpp:reply:0") == nil)

        // Alice replies to carol's line: IRC gets the msgid for +draft/reply.
        var answer = Self.message(nick: "Alice", real: Self.alice, body: "ok", seq: 7)
        answer.append(XMLElement("reply", namespace: "urn:xmpp:reply:0", attributes: ["to": "ops@rooms.test/carol", "id": "s-carol"]))
        #expect(shadow.receive(answer) == [.remoteLine(alice, .reply(to: .local(ircNick: "carol"), text: "ok", ircMsgID: "irc-1"))])
    }

    @Test("an XMPP moderator's kick or ban of an IRC user: one removal action with actor and reason; she is no longer relayed, and her IRC leave sends nothing (flow E)")
    mutating func removedByModerator() {
        federate()
        _ = shadow.ircJoined(nick: "dave", realJID: Self.dave)
        func removal(_ nick: String, real: JID, code: String, seq: UInt64) -> XMLElement {
            var p = Self.presence(nick: nick, real: real, seq: seq, unavailable: true)
            p.append(XMLElement("x", namespace: NS.mucUser, children: [
                .element(XMLElement("item", namespace: NS.mucUser, attributes: ["role": "none"], children: [
                    .element(XMLElement("actor", namespace: NS.mucUser, attributes: ["nick": "boss"])), .element(.text("reason", namespace: NS.mucUser, "spam")),
                ])),
                .element(XMLElement("status", namespace: NS.mucUser, attributes: ["code": code])),
            ]))
            return p
        }
        #expect(shadow.receive(removal("carol", real: Self.carol, code: "307", seq: 4)) == [.localRemoved(nick: "carol", banned: false, actor: "boss", reason: "spam")])
        #expect(shadow.receive(removal("dave", real: Self.dave, code: "301", seq: 5)) == [.localRemoved(nick: "dave", banned: true, actor: "boss", reason: "spam")])
        #expect(shadow.ircMessage(nick: "carol", body: "hello?", originID: "o9").isEmpty)
        #expect(shadow.ircLeft(nick: "carol", reason: "Kicked", kickedBy: "sbridge").isEmpty)
    }

    @Test("hostile fallbacks and ids (found in review): overlapping or out-of-range ranges cut once without a crash; a client's own stanza-id names nothing")
    mutating func hostileLines() {
        federate()
        let alice = ShadowRoom.RemoteOccupant(nick: "Alice", realJID: Self.alice)
        var m = Self.message(nick: "Alice", real: Self.alice, body: "0123456789tail", seq: 4)
        m.append(XMLElement("reply", namespace: "urn:xmpp:reply:0", attributes: ["to": "ops@rooms.test/carol"]))
        m.append(XMLElement("fallback", namespace: "urn:xmpp:fallback:0", attributes: ["for": "urn:xmpp:reply:0"], children: [
            .element(XMLElement("body", namespace: "urn:xmpp:fallback:0", attributes: ["start": "5", "end": "8"])),
            .element(XMLElement("body", namespace: "urn:xmpp:fallback:0", attributes: ["start": "0", "end": "10"])),
            .element(XMLElement("body", namespace: "urn:xmpp:fallback:0", attributes: ["start": "12", "end": "99999"])),
            .element(XMLElement("body", namespace: "urn:xmpp:fallback:0", attributes: ["start": "-4", "end": "2"])),
        ]))
        #expect(shadow.receive(m) == [.remoteLine(alice, .reply(to: .local(ircNick: "carol"), text: "ta"))])

        // A stanza-id the client wrote itself (by someone other than the room) is not an id.
        var fake = Self.message(nick: "Alice", real: Self.alice, body: "mine", seq: 5)
        fake.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": "forged", "by": "elsewhere.test"]))
        _ = shadow.receive(fake)
        let reaction = XMLElement("reactions", namespace: "urn:xmpp:reactions:0", attributes: ["id": "forged"], children: [.element(.text("reaction", namespace: "urn:xmpp:reactions:0", "👍"))])
        var react = Self.message(nick: "Alice", real: Self.alice, body: "", seq: 6)
        react.append(reaction)
        #expect(shadow.receive(react) == [.remoteLine(alice, .reaction(emoji: ["👍"], to: nil, snippet: nil))])
    }

    @Test("a suffixed nick never takes another IRC user's room nick (found in review): alice|irc is here already, so alice becomes alice|irc2")
    mutating func suffixTaken() {
        federate()
        let alicePipe = JID("u3%net@irc.test/irc")!, ircAlice = JID("u4%net@irc.test/irc")!
        _ = shadow.ircJoined(nick: "alice|irc", realJID: alicePipe)
        let join = Self.sent(shadow.ircJoined(nick: "alice", realJID: ircAlice))[0]
        var error = join.errorReply(type: "cancel", condition: "conflict")
        error["from"] = "ops@rooms.test/alice"
        let actions = shadow.receive(error)
        #expect(Self.sent(actions).first?["to"] == "ops@rooms.test/alice|irc2")
        #expect(shadow.receive(Self.presence(nick: "alice|irc2", real: ircAlice, seq: 4)) == [.localRenamed(nick: "alice", roomNick: "alice|irc2")])
        // And an IRC user arriving with a nick another IRC user shows as is suffixed at once.
        let lateJID = JID("u5%net@irc.test/irc")!
        let late = Self.sent(shadow.ircJoined(nick: "ALICE|IRC2", realJID: lateJID))
        #expect(late.first?["to"] == "ops@rooms.test/ALICE|IRC2|irc")
        #expect(shadow.receive(Self.presence(nick: "ALICE|IRC2|irc", real: lateJID, seq: 5)) == [.localRenamed(nick: "ALICE|IRC2", roomNick: "ALICE|IRC2|irc")])
    }

    @Test("a new master epoch means the room state was lost: federate again (found in review)")
    mutating func epochChange() {
        federate()
        var m = Self.message(nick: "Alice", real: Self.alice, body: "after restart", seq: 1)
        m.removeElements { $0.name == "seq" }
        m.append(LinkElements.seq(1, epoch: "e2"))
        let actions = shadow.receive(m)
        #expect(actions.first == .note(.epochChanged))
        #expect(Self.sent(actions).first?.child("link", namespace: NS.link) != nil)
        #expect(!shadow.isFederated)
    }
}
