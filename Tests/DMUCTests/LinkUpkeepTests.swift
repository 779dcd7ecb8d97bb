import DMUC
import Foundation
import Testing
import XMPPCore

/// The link's upkeep (PROTOCOL.md §3 D and G) on both ends: the master's replay buffer and
/// `resync`, keepalive pings, splits and re-federation; the shadow's hold-and-resync on a gap.
@Suite("Link upkeep")
struct LinkUpkeepTests {
    static let room = JID("ops@rooms.test")!
    static let alice = JID("alice@xmpp.test/phone")!
    static let node = JID("#ops%net@irc.test")!
    static let carol = JID("u1%net@irc.test/irc")!
    static let t0 = Date(timeIntervalSince1970: 1_000_000)

    var master = MasterRoom(jid: room, rid: "rid-1", epoch: "e1")

    static func join(_ from: JID, nick: String) -> XMLElement {
        .stanza(.presence, from: from, to: room.with(resource: nick), children: [XMLElement("x", namespace: NS.muc)])
    }

    static func shadowJoin(nick: String, real: JID, link: Bool = true) -> XMLElement {
        var p = XMLElement.stanza(.presence, from: node.with(resource: nick), to: room.with(resource: nick), children: [XMLElement("x", namespace: NS.muc), LinkElements.fmuc(from: real)])
        if link { p.append(LinkElements.link()) }
        return p
    }

    static func say(_ body: String) -> XMLElement {
        .stanza(.message, from: alice, to: room, type: "groupchat", id: "m-\(body)", children: [.text("body", namespace: NS.component, body)])
    }

    static func resync(epoch: String = "e1", from seq: UInt64) -> XMLElement {
        .stanza(.iq, from: node, to: room, type: "set", id: "rs", children: [LinkElements.resync(epoch: epoch, fromSeq: seq)])
    }

    static func toNode(_ out: MasterRoom.Output) -> [XMLElement] { out.stanzas.filter { $0["to"]?.hasPrefix(node.description) == true } }
    static func codes(_ p: XMLElement) -> [String] {
        p.child("x", namespace: NS.mucUser)?.children("status", namespace: NS.mucUser).compactMap { $0["code"] } ?? []
    }

    /// alice on the master, carol behind the node; `lines` said by alice afterwards.
    mutating func federated(lines: Int = 0, at time: Date = t0) {
        _ = master.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false, at: time)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carol), fromShadowDomain: true, at: time)
        for n in 0..<lines { _ = master.receive(Self.say("line \(n)"), fromShadowDomain: false, at: time.addingTimeInterval(Double(n))) }
    }

    // MARK: - Master: replay

    @Test("resync replays the missed stanzas in order with their first seq and original time, then says how many")
    mutating func replay() {
        federated(lines: 5)
        let last = master.seq
        let out = master.receive(Self.resync(from: last - 2), fromShadowDomain: true, at: Self.t0.addingTimeInterval(60)).stanzas
        #expect(out.count == 4)
        #expect(out.prefix(3).map { LinkElements.seqNumber($0) } == [last - 2, last - 1, last])
        #expect(out.prefix(3).map { $0.child("body", namespace: NS.component)?.text } == ["line 2", "line 3", "line 4"])
        #expect(out[0].child("delay", namespace: NS.delay)?["stamp"] == XMPPDateTime.format(Self.t0.addingTimeInterval(2)))
        #expect(out.allSatisfy { $0["to"] == Self.node.description })
        #expect(out[3]["type"] == "result" && out[3].child("replay", namespace: NS.link)?["count"] == "3")
    }

    @Test("a room restored after a restart keeps its stanzas for the nodes still to federate: one that comes back asks from seq 1 and gets the line said before it (found by the master SIGKILL scenario)")
    mutating func replayKeptAfterRestart() {
        master.keepsReplayUntil = Self.t0.addingTimeInterval(600)
        _ = master.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false, at: Self.t0)
        _ = master.receive(Self.say("before the bridge is back"), fromShadowDomain: false, at: Self.t0)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carol), fromShadowDomain: true, at: Self.t0)
        let out = master.receive(Self.resync(from: 1), fromShadowDomain: true, at: Self.t0).stanzas
        #expect(out.contains { $0.child("body", namespace: NS.component)?.text == "before the bridge is back" && LinkElements.seqNumber($0) == 2 })
        #expect(out.last?.child("replay", namespace: NS.link) != nil)
        // Past the window, a room with no node keeps nothing (the hot path of a local room).
        var later = MasterRoom(jid: Self.room, rid: "r", epoch: "e1")
        later.keepsReplayUntil = Self.t0
        _ = later.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false, at: Self.t0.addingTimeInterval(1))
        _ = later.receive(Self.say("nobody keeps this"), fromShadowDomain: false, at: Self.t0.addingTimeInterval(1))
        _ = later.receive(Self.shadowJoin(nick: "carol", real: Self.carol), fromShadowDomain: true, at: Self.t0.addingTimeInterval(1))
        #expect(later.receive(Self.resync(from: 1), fromShadowDomain: true, at: Self.t0.addingTimeInterval(1)).stanzas.last?.child("full", namespace: NS.link) != nil)
    }

    @Test("resync is answered <full/> when the buffer no longer holds the stanzas, the epoch differs, or the node is not federated")
    mutating func fullAnswers() {
        master.replayLimit = (stanzas: 3, seconds: 600)
        federated(lines: 30)
        let full = { (out: MasterRoom.Output) in out.stanzas.count == 1 && out.stanzas[0].child("full", namespace: NS.link) != nil }
        #expect(full(master.receive(Self.resync(from: master.seq - 25), fromShadowDomain: true, at: Self.t0)))
        #expect(!full(master.receive(Self.resync(from: master.seq - 2), fromShadowDomain: true, at: Self.t0)))
        #expect(full(master.receive(Self.resync(epoch: "old", from: master.seq), fromShadowDomain: true, at: Self.t0)))
        // Nothing missing: an empty replay.
        let none = master.receive(Self.resync(from: master.seq + 1), fromShadowDomain: true, at: Self.t0).stanzas
        #expect(none.count == 1 && none[0].child("replay", namespace: NS.link)?["count"] == "0")

        var other = MasterRoom(jid: Self.room, rid: "r", epoch: "e1")
        #expect(full(other.receive(Self.resync(from: 1), fromShadowDomain: true, at: Self.t0)))
    }

    @Test("the replay buffer forgets stanzas older than its age")
    mutating func replayAge() {
        master.replayLimit = (stanzas: 500, seconds: 10)
        federated(lines: 1, at: Self.t0)
        let first = master.seq
        _ = master.receive(Self.say("much later"), fromShadowDomain: false, at: Self.t0.addingTimeInterval(100))
        let out = master.receive(Self.resync(from: first), fromShadowDomain: true, at: Self.t0.addingTimeInterval(100)).stanzas
        #expect(out.count == 1 && out[0].child("full", namespace: NS.link) != nil)
    }

    // MARK: - Master: liveness and splits

    @Test("an idle node is pinged; an answer keeps it; three unanswered pings split it: without a grace, 333 with a netsplit status, no <left/>")
    mutating func pingsAndSplit() {
        master.splitGrace = 0
        federated()
        var now = Self.t0
        #expect(master.tick(at: now, interval: 1).stanzas.isEmpty)  // just heard from it
        now += 1
        let ping = master.tick(at: now, interval: 1).stanzas
        #expect(ping.count == 1 && ping[0]["to"] == Self.node.description && LinkElements.isPing(ping[0]))
        _ = master.receive(XMLElement.stanza(.iq, from: Self.node, to: Self.room, type: "result", id: ping[0]["id"]), fromShadowDomain: true, at: now)
        #expect(master.tick(at: now + 0.5, interval: 1).stanzas.isEmpty)
        var outputs: [MasterRoom.Output] = []
        for _ in 0..<4 {
            now += 1
            outputs.append(master.tick(at: now, interval: 1))
        }
        let split = outputs[3]
        #expect(split.notes.contains { if case .split(Self.node, _) = $0 { true } else { false } })
        #expect(master.shadows.isEmpty && master.splitNodes == [Self.node])
        #expect(master.occupantList.map(\.nick) == ["alice"])
        let gone = split.stanzas.filter { $0["to"] == Self.alice.description }
        #expect(gone.count == 1 && gone[0]["type"] == "unavailable" && gone[0]["from"] == "ops@rooms.test/carol")
        #expect(Self.codes(gone[0]) == ["333"])
        #expect(gone[0].child("status", namespace: NS.component)?.text == "rooms.test irc.test")
        #expect(Self.toNode(split).isEmpty, "nothing goes to a split node, not even <left/>")
        #expect(master.tick(at: now + 5, interval: 1).stanzas.isEmpty, "a split node is not pinged")
    }

    @Test("a split node's submissions are refused with <split/>, and its <link/> presence federates it again with a burst")
    mutating func refusedUntilFederated() {
        master.splitGrace = 0
        federated()
        for n in 1...4 { _ = master.tick(at: Self.t0 + Double(n), interval: 1) }
        var out: MasterRoom.Output
        #expect(master.splitNodes == [Self.node])
        let line = XMLElement.stanza(.message, from: Self.node.with(resource: "carol"), to: Self.room, type: "groupchat", children: [
            .text("body", namespace: NS.component, "during the split"), LinkElements.fmuc(from: Self.carol),
        ])
        out = master.receive(line, fromShadowDomain: true, at: Self.t0 + 10)
        #expect(out.stanzas.count == 1 && LinkElements.isSplitError(out.stanzas[0]))
        #expect(out.stanzas[0].child("body", namespace: NS.component)?.text == "during the split", "the refusal carries the line back")
        // A plain join without <link/> is refused too.
        #expect(LinkElements.isSplitError(master.receive(Self.shadowJoin(nick: "carol", real: Self.carol, link: false), fromShadowDomain: true, at: Self.t0 + 10).stanzas[0]))
        _ = master.receive(Self.say("while split"), fromShadowDomain: false, at: Self.t0 + 10)
        let missed = master.seq
        out = master.receive(Self.shadowJoin(nick: "carol", real: Self.carol), fromShadowDomain: true, at: Self.t0 + 11)
        #expect(master.shadows == [Self.node] && master.splitNodes.isEmpty)
        // What was said during the split is still there to catch up on (found end to end).
        let replayed = master.receive(Self.resync(from: missed), fromShadowDomain: true, at: Self.t0 + 12).stanzas
        #expect(replayed.first?.child("body", namespace: NS.component)?.text == "while split")
        #expect(replayed.last?.child("replay", namespace: NS.link) != nil)
        let burst = Self.toNode(out)
        #expect(burst.last?.child("sync", namespace: NS.link) != nil)
        #expect(out.stanzas.filter { $0["to"] == Self.alice.description }.count == 1, "alice sees carol come back")
    }

    @Test("a split node's users stay through the grace: back in time, nobody sees a thing; whoever it does not bring back leaves with 333 when the grace ends")
    mutating func splitGrace() {
        let dave = JID("u2%net@irc.test/irc")!
        federated()
        _ = master.receive(Self.shadowJoin(nick: "dave", real: dave, link: false), fromShadowDomain: true, at: Self.t0)
        var toAlice: [XMLElement] = []
        for n in 1...4 { toAlice += master.tick(at: Self.t0 + Double(n), interval: 1).stanzas.filter { $0["to"] == Self.alice.description } }
        #expect(master.splitNodes == [Self.node] && master.shadows.isEmpty)
        #expect(master.occupantList.map(\.nick).sorted() == ["alice", "carol", "dave"], "kept through the grace")
        // Nothing reaches a kept user meanwhile; the sender is told rather than left guessing.
        let pm = XMLElement.stanza(.message, from: Self.alice, to: Self.room.with(resource: "carol"), type: "chat", id: "pm", children: [.text("body", namespace: NS.component, "there?")])
        let refused = master.receive(pm, fromShadowDomain: false, at: Self.t0 + 5).stanzas
        #expect(refused.count == 1 && refused[0].errorCondition == "recipient-unavailable" && refused[0]["to"] == Self.alice.description)
        toAlice += master.receive(Self.say("while split"), fromShadowDomain: false, at: Self.t0 + 6).stanzas.filter { $0["to"] == Self.alice.description && $0.name == "presence" }
        // The node comes back (a restarted bridge) with carol, under a new id.
        let carolAgain = JID("u9%net@irc.test/irc")!
        let back = master.receive(Self.shadowJoin(nick: "carol", real: carolAgain), fromShadowDomain: true, at: Self.t0 + 10)
        #expect(master.shadows == [Self.node] && master.splitNodes.isEmpty)
        #expect(back.notes.contains(.federated(shadow: Self.node)))
        #expect(Self.toNode(back).last?.child("sync", namespace: NS.link) != nil, "a burst")
        toAlice += back.stanzas.filter { $0["to"] == Self.alice.description }
        toAlice += master.tick(at: Self.t0 + 20, interval: 1).stanzas.filter { $0["to"] == Self.alice.description }
        #expect(toAlice.isEmpty, "\(toAlice.map { $0.serialized(parentNamespace: NS.component) })")
        // The grace (30 s from the split at t0+4) ends: dave, never brought back, leaves once.
        let end = master.tick(at: Self.t0 + 35, interval: 1).stanzas.filter { $0["to"] == Self.alice.description }
        #expect(end.count == 1 && end.first?["from"] == "ops@rooms.test/dave" && end.first.map(Self.codes) == ["333"])
        #expect(master.occupantList.map(\.nick).sorted() == ["alice", "carol"])
        #expect(master.tick(at: Self.t0 + 70, interval: 1).stanzas.filter { $0["to"] == Self.alice.description }.isEmpty)
    }

    @Test("a ping bounced by the node's server (component down) is a split at once; an error from the node itself is not")
    mutating func bounceSplits() {
        federated()
        let ping = master.tick(at: Self.t0 + 1, interval: 1).stanzas[0]
        var alive = ping.errorReply(type: "cancel", condition: "feature-not-implemented")
        alive["from"] = Self.node.description
        _ = master.receive(alive, fromShadowDomain: true, at: Self.t0 + 1)
        #expect(master.shadows == [Self.node])
        let down = ping.errorReply(type: "wait", condition: "service-unavailable", text: "Component unavailable")
        let out = master.receive(down, fromShadowDomain: true, at: Self.t0 + 2)
        #expect(master.splitNodes == [Self.node])
        #expect(out.notes.contains { if case .split = $0 { true } else { false } })
    }

    @Test("a federated node's keepalive ping to the room is answered; anyone else's is not-acceptable")
    mutating func nodePing() {
        federated()
        let ping = LinkElements.ping(from: Self.node, to: Self.room, id: "p1")
        #expect(master.receive(ping, fromShadowDomain: true, at: Self.t0).stanzas.first?["type"] == "result")
        let stranger = LinkElements.ping(from: JID("#other%net@irc.test")!, to: Self.room, id: "p2")
        #expect(master.receive(stranger, fromShadowDomain: true, at: Self.t0).stanzas.first?.errorCondition == "not-acceptable")
    }

    // MARK: - Shadow: gaps

    var shadow = ShadowRoom(masterRoom: room, jid: node)

    static func numbered(_ body: String, seq: UInt64, epoch: String = "e1") -> XMLElement {
        .stanza(.message, from: room.with(resource: "alice"), to: node, type: "groupchat", children: [
            .text("body", namespace: NS.component, body), LinkElements.fmuc(from: alice), LinkElements.seq(seq, epoch: epoch),
        ])
    }

    mutating func shadowFederated(at seq: UInt64 = 3) {
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        _ = shadow.receive(.stanza(.presence, from: Self.room.with(resource: "carol"), to: Self.node, children: [LinkElements.fmuc(from: Self.carol)]))
        _ = shadow.receive(.stanza(.message, from: Self.room, to: Self.node, type: "groupchat", children: [
            .text("subject", namespace: NS.component, ""), LinkElements.sync(epoch: "e1", rid: "rid-1", seq: seq),
        ]))
    }

    static func bodies(_ actions: [ShadowRoom.Action]) -> [String] {
        actions.compactMap { if case .remoteMessage(_, let body, _) = $0 { body } else { nil } }
    }

    static func sent(_ actions: [ShadowRoom.Action]) -> [XMLElement] {
        actions.compactMap { if case .send(let s) = $0 { s } else { nil } }
    }

    @Test("a gap holds what comes after it, asks once for the missing stanzas, and relays everything in order when they arrive")
    mutating func gapAndReplay() {
        shadowFederated()
        #expect(Self.bodies(shadow.receive(Self.numbered("four", seq: 4))) == ["four"])
        let gap = shadow.receive(Self.numbered("seven", seq: 7))
        #expect(Self.bodies(gap).isEmpty, "held, not relayed out of order")
        let asks = Self.sent(gap)
        #expect(asks.count == 1 && asks[0].child("resync", namespace: NS.link)?["from-seq"] == "5" && asks[0].child("resync", namespace: NS.link)?["epoch"] == "e1")
        #expect(Self.sent(shadow.receive(Self.numbered("eight", seq: 8))).isEmpty, "one resync in flight")
        #expect(Self.bodies(shadow.receive(Self.numbered("five", seq: 5))) == ["five"])
        #expect(Self.bodies(shadow.receive(Self.numbered("six", seq: 6))) == ["six", "seven", "eight"])
        let answer = shadow.receive(asks[0].iqResult(LinkElements.replayed(2)).with(from: Self.room))
        #expect(answer == [.note(.resynced(replayed: 2))])
        #expect(Self.bodies(shadow.receive(Self.numbered("again", seq: 7))).isEmpty, "duplicates of the replay are dropped")
        #expect(Self.bodies(shadow.receive(Self.numbered("nine", seq: 9))) == ["nine"])
    }

    @Test("a <full/> answer makes the node federate again, and the new burst is diffed")
    mutating func fullResync() {
        shadowFederated()
        let asks = Self.sent(shadow.receive(Self.numbered("seven", seq: 7)))
        let answer = shadow.receive(asks[0].iqResult(LinkElements.full()).with(from: Self.room))
        #expect(answer.first == .note(.resynced(replayed: nil)))
        let again = Self.sent(answer)
        #expect(again.count == 1 && again[0].name == "presence" && again[0].child("link", namespace: NS.link) != nil)
        #expect(!shadow.isFederated)
    }

    // MARK: - Shadow: liveness and splits

    @Test("the shadow pings a silent master, answers the master's pings, and federates again after three unanswered pings")
    mutating func shadowPings() {
        shadowFederated()
        #expect(shadow.tick().isEmpty, "heard from the master since the last tick")
        let ping = Self.sent(shadow.tick())
        #expect(ping.count == 1 && LinkElements.isPing(ping[0]) && ping[0]["to"] == Self.room.description)
        _ = shadow.receive(ping[0].iqResult().with(from: Self.room))
        #expect(shadow.tick().isEmpty)
        let masterPing = LinkElements.ping(from: Self.room, to: Self.node, id: "mp")
        #expect(Self.sent(shadow.receive(masterPing)).first?["type"] == "result")
        _ = shadow.tick()
        var last: [ShadowRoom.Action] = []
        for _ in 0..<4 where shadow.isFederated { last = shadow.tick() }
        #expect(last.contains { if case .note(.split) = $0 { true } else { false } })
        #expect(Self.sent(last).contains { $0.child("link", namespace: NS.link) != nil })
    }

    @Test("after a split the node federates with where it stood, and after the burst asks for and relays the messages it missed, once")
    mutating func catchUpAfterSplit() {
        shadowFederated()
        _ = shadow.receive(Self.numbered("four", seq: 4))
        var split: [ShadowRoom.Action] = []
        for _ in 0..<5 where shadow.isFederated { split = shadow.tick() }
        let link = Self.sent(split).first?.child("link", namespace: NS.link)
        #expect(link?["epoch"] == "e1" && link?["last-seq"] == "4")
        _ = shadow.receive(.stanza(.presence, from: Self.room.with(resource: "carol"), to: Self.node, children: [LinkElements.fmuc(from: Self.carol)]))
        let burst = shadow.receive(.stanza(.message, from: Self.room, to: Self.node, type: "groupchat", children: [
            .text("subject", namespace: NS.component, ""), LinkElements.sync(epoch: "e1", rid: "rid-1", seq: 7),
        ]))
        let ask = Self.sent(burst).first { $0.name == "iq" }
        #expect(ask?.child("resync", namespace: NS.link)?["from-seq"] == "5")
        var replayedSix = Self.numbered("missed", seq: 6)
        replayedSix.append(XMLElement("delay", namespace: NS.delay, attributes: ["stamp": "2026-11-25T10:00:00Z"]))
        #expect(Self.bodies(shadow.receive(replayedSix)) == ["missed"])
        #expect(shadow.receive(ask!.iqResult(LinkElements.replayed(3))) == [.note(.resynced(replayed: 3))])
        #expect(Self.bodies(shadow.receive(replayedSix)).isEmpty, "the catch-up is over: a duplicate again")
        #expect(Self.bodies(shadow.receive(Self.numbered("eight", seq: 8))) == ["eight"])
    }

    @Test("a line refused with <split/> is held and submitted again after the new burst, once")
    mutating func splitRefusalKeepsTheLine() {
        shadowFederated()
        let line = Self.sent(shadow.ircMessage(nick: "carol", body: "lost?", originID: "o-1"))[0]
        let refusal = line.errorReply(type: "wait", condition: "not-acceptable", application: LinkElements.split())
        let actions = shadow.receive(refusal)
        #expect(actions.contains { if case .note(.split) = $0 { true } else { false } })
        #expect(Self.sent(actions).count == 1, "one federating presence")
        _ = shadow.receive(.stanza(.presence, from: Self.room.with(resource: "carol"), to: Self.node, children: [LinkElements.fmuc(from: Self.carol)]))
        let burst = shadow.receive(.stanza(.message, from: Self.room, to: Self.node, type: "groupchat", children: [
            .text("subject", namespace: NS.component, ""), LinkElements.sync(epoch: "e1", rid: "rid-1", seq: 9),
        ]))
        let resent = Self.sent(burst).filter { $0.name == "message" }
        #expect(resent.count == 1 && resent[0].child("body", namespace: NS.component)?.text == "lost?" && LinkElements.originID(of: resent[0]) == "o-1")
    }

    /// Prosody's bounce for a component that is not connected: the original's id, no payload.
    static func bodilessBounce(of line: XMLElement) -> XMLElement {
        var bounce = XMLElement.stanza(.message, from: JID(line["to"]!)!, to: JID(line["from"]!)!, type: "error", id: line["id"])
        bounce.append(XMLElement("error", namespace: NS.component, attributes: ["type": "wait"], children: [
            .element(XMLElement("remote-server-timeout", namespace: NS.stanzas)), .element(.text("text", namespace: NS.stanzas, "Component unavailable")),
        ]))
        return bounce
    }

    @Test("lines the XMPP server bounces without their body (the master's component restarting) are held from what was submitted and sent again after the new burst, once each, even when the second bounce comes after the first started a new federation (found by the master live-restart scenario)")
    mutating func bodilessBounceKeepsTheLines() {
        shadowFederated()
        let first = Self.sent(shadow.ircMessage(nick: "carol", body: "one", originID: "o-1"))[0]
        let second = Self.sent(shadow.ircMessage(nick: "carol", body: "two", originID: "o-2"))[0]
        let actions = shadow.receive(Self.bodilessBounce(of: first))
        #expect(actions.contains { if case .note(.split) = $0 { true } else { false } })
        #expect(Self.sent(shadow.receive(Self.bodilessBounce(of: second))).isEmpty, "federating already: no second federation")
        _ = shadow.receive(.stanza(.presence, from: Self.room.with(resource: "carol"), to: Self.node, children: [LinkElements.fmuc(from: Self.carol)]))
        let burst = shadow.receive(.stanza(.message, from: Self.room, to: Self.node, type: "groupchat", children: [
            .text("subject", namespace: NS.component, ""), LinkElements.sync(epoch: "e1", rid: "rid-1", seq: 9),
        ]))
        let resent = Self.sent(burst).filter { $0.name == "message" }
        #expect(resent.map { $0.child("body", namespace: NS.component)?.text } == ["one", "two"])
        #expect(resent.map { LinkElements.originID(of: $0) } == ["o-1", "o-2"])
    }
}

extension XMLElement {
    func with(from jid: JID) -> XMLElement {
        var copy = self
        copy["from"] = jid.description
        return copy
    }
}

/// Flow A's refusals and flow E's removal kinds.
@Suite("Link refusals and removals")
struct LinkRefusalTests {
    static let room = LinkUpkeepTests.room
    static let node = LinkUpkeepTests.node
    static let carol = LinkUpkeepTests.carol
    var master = MasterRoom(jid: room, rid: "rid-1", epoch: "e1")

    @Test("a node from a domain not allowed is rejected bare to bare with <reject/>, and nobody joins; the shadow sees a failed federation")
    mutating func rejected() {
        let out = master.receive(LinkUpkeepTests.shadowJoin(nick: "carol", real: Self.carol), fromShadowDomain: false).stanzas
        #expect(out.count == 1 && out[0]["to"] == Self.node.description && out[0]["from"] == Self.room.description)
        #expect(LinkElements.rejection(out[0]) != nil)
        #expect(master.occupantList.isEmpty)
        var shadow = ShadowRoom(masterRoom: Self.room, jid: Self.node)
        _ = shadow.ircJoined(nick: "carol", realJID: Self.carol)
        #expect(shadow.receive(out[0]).first.map { if case .federationFailed(let c) = $0 { c.hasPrefix("rejected") } else { false } } == true)
    }

    @Test("a shadow's user refused for a taken nick gets <collision nick/> naming the holder")
    mutating func collision() {
        _ = master.receive(LinkUpkeepTests.join(LinkUpkeepTests.alice, nick: "Alice"), fromShadowDomain: false)
        let out = master.receive(LinkUpkeepTests.shadowJoin(nick: "alice", real: Self.carol), fromShadowDomain: true).stanzas
        #expect(out.count == 1 && out[0].errorCondition == "conflict")
        #expect(out[0].child("error", namespace: NS.component)?.child("collision", namespace: NS.link)?["nick"] == "Alice")
    }

    @Test("removal kinds from a shadow: kick 307, ban 301, netsplit 333, quit a plain leave")
    mutating func removalKinds() {
        _ = master.receive(LinkUpkeepTests.join(LinkUpkeepTests.alice, nick: "alice"), fromShadowDomain: false)
        for (n, kind, code) in [(1, "kick", "307"), (2, "ban", "301"), (3, "netsplit", "333"), (4, "quit", nil)] as [(Int, String, String?)] {
            let real = JID("u\(n)%net@irc.test/irc")!
            _ = master.receive(LinkUpkeepTests.shadowJoin(nick: "irc\(n)", real: real), fromShadowDomain: true)
            let leave = XMLElement.stanza(.presence, from: Self.node.with(resource: "irc\(n)"), to: Self.room.with(resource: "irc\(n)"), type: "unavailable", children: [
                LinkElements.fmuc(from: real), LinkElements.removed(kind: kind, by: kind == "kick" || kind == "ban" ? "op" : nil, reason: "why"),
                .text("status", namespace: NS.component, "why"),
            ])
            let seen = master.receive(leave, fromShadowDomain: true).stanzas.first { $0["to"] == LinkUpkeepTests.alice.description }
            #expect(LinkUpkeepTests.codes(seen!) == (code.map { [$0] } ?? []), "\(kind)")
        }
    }
}

/// A live restart of the master (SIGUSR2): the room handed to the next process, through JSON
/// as the handover file carries it, is the same room to its clients and its nodes.
@Suite("Master room handover")
struct MasterRoomHandoverTests {
    typealias L = LinkUpkeepTests

    /// Each room draws its own XEP-0359 ids for a new line; everything else must match.
    static func withoutStanzaIDs(_ stanzas: [XMLElement]) -> [XMLElement] {
        stanzas.map { stanza in
            var stanza = stanza
            stanza.removeElements { $0.name == "stanza-id" && $0.namespace == NS.sid }
            return stanza
        }
    }

    static func roundTrip(_ room: MasterRoom) throws -> MasterRoom {
        let data = try JSONEncoder().encode(room.handover)
        return try MasterRoom(handover: JSONDecoder().decode(MasterRoom.Handover.self, from: data))
    }

    @Test("occupants (a client away with a status, a node's user), subject, sequence and replay come through; a node's resync is answered by replay, not <full/>, and a line said after goes on from the same seq")
    func sameRoom() throws {
        var master = MasterRoom(jid: L.room, rid: "rid-1", epoch: "e1")
        var join = L.join(L.alice, nick: "alice")
        join.append(.text("show", namespace: NS.component, "away"))
        join.append(.text("status", namespace: NS.component, "lunch & back <soon>"))
        _ = master.receive(join, fromShadowDomain: false, at: L.t0)
        _ = master.receive(L.shadowJoin(nick: "carol", real: L.carol), fromShadowDomain: true, at: L.t0)
        var subject = XMLElement.stanza(.message, from: L.alice, to: L.room, type: "groupchat", id: "s1")
        subject.append(.text("subject", namespace: NS.component, "plans"))
        _ = master.receive(subject, fromShadowDomain: false, at: L.t0)
        for n in 0..<3 { _ = master.receive(L.say("line \(n)"), fromShadowDomain: false, at: L.t0.addingTimeInterval(Double(n))) }

        master.keepsReplayUntil = L.t0.addingTimeInterval(600)
        var taken = try Self.roundTrip(master)
        #expect(taken.epoch == "e1" && taken.rid == "rid-1" && taken.seq == master.seq)
        #expect(taken.snapshot == master.snapshot, "config, affiliations, subject, occupant-id key")
        #expect(taken.locked == master.locked && taken.keepsReplayUntil == master.keepsReplayUntil)
        #expect(taken.occupantList == master.occupantList)
        #expect(taken.occupantList.first?.presencePayload.count == 2)
        #expect(taken.subject == "plans" && taken.subjectNick == "alice")
        #expect(taken.shadows == [L.node])

        let later = L.t0.addingTimeInterval(10)
        var original = master
        let expected = original.receive(L.resync(from: master.seq - 1), fromShadowDomain: true, at: later).stanzas
        let replayed = taken.receive(L.resync(from: master.seq - 1), fromShadowDomain: true, at: later).stanzas
        #expect(replayed.last?.child("replay", namespace: NS.link)?["count"] == "2")
        #expect(replayed == expected)

        // What comes next is answered as the room before would have: the same stanzas, the
        // same seq, the same history on a client's rejoin.
        let next = taken.receive(L.say("after"), fromShadowDomain: false, at: later).stanzas
        #expect(next.compactMap { LinkElements.seqNumber($0) } == [master.seq + 1])
        #expect(Self.withoutStanzaIDs(next) == Self.withoutStanzaIDs(original.receive(L.say("after"), fromShadowDomain: false, at: later).stanzas))
        let again = taken.receive(L.join(L.alice, nick: "alice"), fromShadowDomain: false, at: later).stanzas
        #expect(again.count > 3)
        #expect(Self.withoutStanzaIDs(again) == Self.withoutStanzaIDs(original.receive(L.join(L.alice, nick: "alice"), fromShadowDomain: false, at: later).stanzas))
    }

    @Test("a node split away comes through split, with its held occupants and the time the grace started")
    func splitHeld() throws {
        var master = MasterRoom(jid: L.room, rid: "rid-1", epoch: "e1")
        master.splitGrace = 30
        _ = master.receive(L.join(L.alice, nick: "alice"), fromShadowDomain: false, at: L.t0)
        _ = master.receive(L.shadowJoin(nick: "carol", real: L.carol), fromShadowDomain: true, at: L.t0)
        var error = XMLElement.stanza(.message, from: L.node, to: L.room, type: "error")
        error.append(XMLElement("error", namespace: NS.component, attributes: ["type": "cancel"], children: [.element(XMLElement("remote-server-not-found", namespace: NS.stanzas))]))
        _ = master.receive(error, fromShadowDomain: true, at: L.t0)
        #expect(master.splitNodes == [L.node])

        var taken = try Self.roundTrip(master)
        taken.splitGrace = 30
        #expect(taken.splitNodes == [L.node] && taken.shadows.isEmpty)
        #expect(taken.tick(at: L.t0.addingTimeInterval(10), interval: 60).stanzas.isEmpty, "carol is held through the grace")
        let end = taken.tick(at: L.t0.addingTimeInterval(31), interval: 60).stanzas
        #expect(end.contains { $0["from"] == L.room.with(resource: "carol").description && $0["type"] == "unavailable" && L.codes($0).contains("333") })
    }

    @Test("a handover that names something unreadable is refused with what, not taken up half")
    func unreadable() throws {
        var master = MasterRoom(jid: L.room, rid: "rid-1", epoch: "e1")
        _ = master.receive(L.say("x"), fromShadowDomain: false, at: L.t0)
        _ = master.receive(L.join(L.alice, nick: "alice"), fromShadowDomain: false, at: L.t0)
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(master.handover)) as! [String: Any]
        var occupants = json["occupants"] as! [[String: Any]]
        occupants[0]["presence"] = ["<show>away"]
        json["occupants"] = occupants
        let broken = try JSONDecoder().decode(MasterRoom.Handover.self, from: JSONSerialization.data(withJSONObject: json))
        #expect(throws: MasterRoom.HandoverError.self) { try MasterRoom(handover: broken) }
    }
}
