import DMUC
import Foundation
import XMPPCore

// The master room core with 10,000 occupants (issue 4's measure): most behind one shadow,
// 100 local clients, 3 federated shadows. Every stanza the room emits is serialized, as the
// component would write it. In-process: no XMPP server, no sockets.

func rssKiB() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

func seconds(_ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

let total = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 10_000
let localCount = 100
let roomJID = JID("bench@rooms.test")!
let shadows = (1...3).map { JID("#bench%net\($0)@irc\($0).test")! }
var room = MasterRoom(jid: roomJID, rid: "rid", epoch: "e")
var bytes = 0
var stanzas = 0

@MainActor @inline(never) func emit(_ out: MasterRoom.Output) {
    for stanza in out.stanzas { bytes += stanza.serialized(parentNamespace: NS.component).utf8.count }
    stanzas += out.stanzas.count
}

func localJoin(_ i: Int) -> XMLElement {
    var p = XMLElement.stanza(.presence, from: JID("user\(i)@xmpp.test/res")!, to: roomJID.with(resource: "local\(i)"))
    p.append(XMLElement("x", namespace: NS.muc, children: [.element(XMLElement("history", namespace: NS.muc, attributes: ["maxstanzas": "0"]))]))
    return p
}

func shadowJoin(_ shadow: JID, _ i: Int, link: Bool) -> XMLElement {
    let nick = "irc\(i)"
    var p = XMLElement.stanza(.presence, from: shadow.with(resource: nick), to: roomJID.with(resource: nick))
    p.append(XMLElement("x", namespace: NS.muc))
    p.append(LinkElements.fmuc(from: JID("u\(i)%net@\(shadow.domain)/irc")!))
    if link { p.append(LinkElements.link()) }
    return p
}

let rssBefore = rssKiB()
let ircCount = total - localCount
let joinTime = seconds {
    for i in 0..<localCount { emit(room.receive(localJoin(i), fromShadowDomain: false)) }
    // Two small shadows and the big one, each federating with its first user.
    emit(room.receive(shadowJoin(shadows[1], 1_000_000, link: true), fromShadowDomain: true))
    emit(room.receive(shadowJoin(shadows[2], 1_000_001, link: true), fromShadowDomain: true))
    for i in 0..<(ircCount - 2) { emit(room.receive(shadowJoin(shadows[0], i, link: i == 0), fromShadowDomain: true)) }
}
let joinStanzas = stanzas, joinBytes = bytes
let rssAfterJoin = rssKiB()

stanzas = 0
bytes = 0
let lateJoin = seconds { emit(room.receive(localJoin(99_999), fromShadowDomain: false)) }
let lateStanzas = stanzas

stanzas = 0
bytes = 0
let messages = 2_000
let speaker = JID("user0@xmpp.test/res")!
let fanoutTime = seconds {
    for i in 0..<messages {
        let m = XMLElement.stanza(.message, from: speaker, to: roomJID, type: "groupchat", id: "m\(i)", children: [.text("body", namespace: NS.component, "line \(i) of the fanout benchmark")])
        emit(room.receive(m, fromShadowDomain: false))
    }
}
let fanoutStanzas = stanzas

func f(_ x: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", x) }
print("MasterRoom, \(room.occupantList.count) occupants (\(localCount + 1) local, \(ircCount) behind 3 shadows)")
print("join burst: \(joinStanzas) stanzas, \(joinBytes / 1024) KiB serialized, \(f(joinTime, 2)) s to the last stanza (\(f(Double(total) / joinTime, 0)) joins/s)")
print("a client joining the full room: \(lateStanzas) stanzas in \(f(lateJoin * 1000)) ms")
print("fanout: \(messages) messages -> \(fanoutStanzas) stanzas in \(f(fanoutTime, 2)) s: \(f(Double(messages) / fanoutTime, 0)) messages/s, \(f(Double(fanoutStanzas) / fanoutTime, 0)) stanzas/s")
print("RSS: \(rssBefore / 1024) MiB before, \(rssAfterJoin / 1024) MiB with the room (\(f(Double(rssAfterJoin - rssBefore) * 1024 / Double(total), 0)) bytes per occupant)")
