import Foundation
import Lab
import Testing

/// Issue 7, the part landed so far: what an admin sees of a running bridge.
@Suite("Operations: metrics", .serialized, .labServers)
struct OperationsTests {
    /// The value of one sample line, `name{labels} value`, or 0 when absent.
    static func sample(_ text: String, _ series: String) -> Double {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1)) ?? .nan
        }
        return 0
    }

    @Test("the Prometheus endpoint counts messages and presence each way, puppets and master fanout, scraped before and after traffic")
    func metrics() throws {
        let port = try Lab.freePort()
        let r = try BridgedRoom(servers: try LabServers.require(), name: "metrics1", ircUsers: ["carol"], xmppUsers: [("mxa", "xanna")], metricsPort: port)
        defer { r.close() }
        let before = try #require(Lab.httpGet(port: port, path: "/metrics"), "no /metrics on \(port)")
        #expect(before.contains("# TYPE shadowbridge_messages_total counter"))
        #expect(Self.sample(before, "shadowbridge_puppet_connections") == 1)
        #expect(Self.sample(before, "shadowbridge_master_federations_total") == 1)
        // carol's join went to the room, xanna's came to IRC: one presence event each way.
        #expect(Self.sample(before, #"shadowbridge_presence_events_total{direction="irc_to_xmpp"}"#) == 1)
        #expect(Self.sample(before, #"shadowbridge_presence_events_total{direction="xmpp_to_irc"}"#) == 1)
        #expect(Lab.httpGet(port: port, path: "/nothing") == nil, "other paths are 404")

        var mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :counted once")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "mxa", from: r.occupant("carol"), body: "counted once")], since: mark)
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "mxa", "room": r.room, "body": "and back"])
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "mxa", from: r.occupant("xanna"), body: "and back"), On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "and back")],
            since: mark)
        let after = try #require(Lab.httpGet(port: port, path: "/metrics"))
        let ircToXMPP = #"shadowbridge_messages_total{direction="irc_to_xmpp"}"#
        let xmppToIRC = #"shadowbridge_messages_total{direction="xmpp_to_irc"}"#
        #expect(Self.sample(after, ircToXMPP) - Self.sample(before, ircToXMPP) == 1)
        #expect(Self.sample(after, xmppToIRC) - Self.sample(before, xmppToIRC) == 1)
        // Each room message: to the one client, and once to the shadow.
        #expect(Self.sample(after, "shadowbridge_master_link_stanzas_total") - Self.sample(before, "shadowbridge_master_link_stanzas_total") == 2)
        #expect(Self.sample(after, "shadowbridge_link_seq_gaps_total") == 0)
        #expect(Self.sample(after, "shadowbridge_link_duplicates_dropped_total") == 0)
    }
}
