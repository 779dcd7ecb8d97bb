import DMUC
import Foundation
import Testing
import XMPPCore

/// The master's per-client and per-node rate limits (issue 9), with time passed in.
@Suite("MasterRoom rate limits")
struct RateLimitTests {
    typealias T = MasterRoomTests
    var master = MasterRoom(jid: T.room, rid: "rid-1", epoch: "e1")
    let start = Date(timeIntervalSince1970: 1_000)

    static func isTooFast(_ stanza: XMLElement) -> Bool {
        stanza["type"] == "error" && stanza.errorCondition == "policy-violation" && stanza.child("error", namespace: stanza.namespace)?["type"] == "wait"
    }

    @Test("a client beyond its burst is refused with a wait policy-violation that goes to it alone; it may speak again once the bucket refills; leaving is never limited")
    mutating func client() {
        master.clientLimit = RateLimit(perSecond: 1, burst: 3)
        _ = master.receive(T.join(T.bob, nick: "Bob"), fromShadowDomain: false, at: start)
        _ = master.receive(T.join(T.alice, nick: "Alice"), fromShadowDomain: false, at: start)  // alice: 2 left
        for body in ["one", "two"] {
            let out = master.receive(T.groupchat(T.alice, body), fromShadowDomain: false, at: start).stanzas
            #expect(out.count == 2 && out.allSatisfy { $0["type"] == "groupchat" })
        }
        let refused = master.receive(T.groupchat(T.alice, "three"), fromShadowDomain: false, at: start)
        #expect(refused.stanzas.count == 1 && Self.isTooFast(refused.stanzas[0]) && refused.stanzas[0]["to"] == T.alice.description)
        #expect(refused.notes == [.refused(from: T.alice, condition: "policy-violation")])
        // Bob has his own bucket.
        #expect(master.receive(T.groupchat(T.bob, "bob's"), fromShadowDomain: false, at: start).stanzas.count == 2)
        // A status change is presence too.
        var away = XMLElement.stanza(.presence, from: T.alice, to: T.room.with(resource: "Alice"))
        away.append(.text("show", namespace: NS.component, "away"))
        let refusedAway = master.receive(away, fromShadowDomain: false, at: start.addingTimeInterval(0.5)).stanzas
        #expect(refusedAway.count == 1 && Self.isTooFast(refusedAway[0]))
        // A chat state (no body) is not counted, nor refused.
        let composing = XMLElement.stanza(.message, from: T.alice, to: T.room, type: "groupchat", children: [XMLElement("composing", namespace: "http://jabber.org/protocol/chatstates")])
        #expect(!master.receive(composing, fromShadowDomain: false, at: start.addingTimeInterval(0.5)).stanzas.contains(where: Self.isTooFast))
        // A second later one token is back.
        let later = master.receive(T.groupchat(T.alice, "four"), fromShadowDomain: false, at: start.addingTimeInterval(1.5)).stanzas
        #expect(later.count == 2 && later.allSatisfy { $0["type"] == "groupchat" })
        let leave = XMLElement.stanza(.presence, from: T.alice, to: T.room.with(resource: "Alice"), type: "unavailable")
        let left = master.receive(leave, fromShadowDomain: false, at: start.addingTimeInterval(1.5)).stanzas
        #expect(left.count == 2 && left.allSatisfy { $0["type"] == "unavailable" })
    }

    @Test("a shadow beyond its burst has the line refused back to the user's occupant JID with its origin id; its presence still passes")
    mutating func shadow() {
        master.shadowLimit = RateLimit(perSecond: 1, burst: 2)
        _ = master.receive(T.join(T.alice, nick: "Alice"), fromShadowDomain: false, at: start)
        _ = master.receive(T.shadowJoin(nick: "carol", real: T.carolReal), fromShadowDomain: true, at: start)
        func line(_ body: String) -> XMLElement {
            var line = T.groupchat(T.shadow.with(resource: "carol"), body)
            line.append(LinkElements.originID("o-\(body)"))
            line.append(LinkElements.fmuc(from: T.carolReal))
            return line
        }
        #expect(master.receive(line("one"), fromShadowDomain: true, at: start).stanzas.count == 2)
        #expect(master.receive(line("two"), fromShadowDomain: true, at: start).stanzas.count == 2)
        let refused = master.receive(line("three"), fromShadowDomain: true, at: start).stanzas
        #expect(refused.count == 1 && Self.isTooFast(refused[0]))
        #expect(refused[0]["to"] == "#ops%net@irc.test/carol" && LinkElements.originID(of: refused[0]) == "o-three")
        // A topic change from IRC is never refused: IRC has it already.
        var topic = XMLElement.stanza(.message, from: T.shadow.with(resource: "carol"), to: T.room, type: "groupchat", children: [.text("subject", namespace: NS.component, "new topic")])
        topic.append(LinkElements.fmuc(from: T.carolReal))
        #expect(!master.receive(topic, fromShadowDomain: true, at: start).stanzas.contains(where: Self.isTooFast))
        #expect(master.subject == "new topic")
        // Joins from the node are never limited.
        let dave = master.receive(T.shadowJoin(nick: "dave", real: JID("u2%net@irc.test/irc")!, link: false), fromShadowDomain: true, at: start).stanzas
        #expect(dave.contains { $0["to"] == T.alice.description && $0.name == "presence" && $0["type"] == nil })
    }

    @Test("without limits (the default of a bare room, rate 0 in the config) nothing is refused")
    mutating func unlimited() {
        _ = master.receive(T.join(T.alice, nick: "Alice"), fromShadowDomain: false, at: start)
        for n in 0..<100 {
            #expect(master.receive(T.groupchat(T.alice, "\(n)"), fromShadowDomain: false, at: start).stanzas.count == 1)
        }
    }
}
