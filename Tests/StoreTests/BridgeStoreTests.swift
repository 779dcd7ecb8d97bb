import Foundation
import Store
import Testing

@Suite struct BridgeStoreTests {
    @Test("shadow positions survive reopening; the latest write wins; a forgotten shadow is gone")
    func positionsSurviveReopening() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("state/bridge.sqlite").path
        do {
            let store = try BridgeStore(path: path)
            try store.savePosition(.init(epoch: "e1", seq: 4), shadow: "#ops%lab@irc.test", master: "ops@rooms.test")
            try store.savePosition(.init(epoch: "e1", seq: 9), shadow: "#ops%lab@irc.test", master: "ops@rooms.test")
            try store.savePosition(.init(epoch: "e2", seq: UInt64(Int64.max) + 5), shadow: "#dev%lab@irc.test", master: "dev@rooms.test")
            try store.savePosition(.init(epoch: "e3", seq: 1), shadow: "#old%lab@irc.test", master: "old@rooms.test")
            try store.forget(shadows: ["#old%lab@irc.test"])
        }
        let positions = try BridgeStore(path: path).positions()
        #expect(positions.count == 2)
        #expect(positions["#ops%lab@irc.test"]?.master == "ops@rooms.test")
        #expect(positions["#ops%lab@irc.test"]?.position == .init(epoch: "e1", seq: 9))
        #expect(positions["#dev%lab@irc.test"]?.position.seq == UInt64(Int64.max), "clamped, never negative")
    }

    @Test("puppet nicks survive reopening, per network and occupant; the latest write wins")
    func puppetNicksSurviveReopening() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("bridge.sqlite").path
        do {
            let store = try BridgeStore(path: path)
            try store.savePuppetNick(.init(roomNick: "Jürgen", ircNick: "Jurgen"), occupant: "juergen@xmpp.test", network: "lab")
            try store.savePuppetNick(.init(roomNick: "Jürgen", ircNick: "Jurgen_"), occupant: "juergen@xmpp.test", network: "lab")
            try store.savePuppetNick(.init(roomNick: "Jürgen", ircNick: "Juergen"), occupant: "juergen@xmpp.test", network: "other")
        }
        let nicks = try BridgeStore(path: path).puppetNicks()
        #expect(nicks["lab"] == ["juergen@xmpp.test": .init(roomNick: "Jürgen", ircNick: "Jurgen_")])
        #expect(nicks["other"]?["juergen@xmpp.test"]?.ircNick == "Juergen")
    }

    @Test("the last IRC line seen per network and channel survives reopening; a line with only a time is kept")
    func seenSurvivesReopening() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bridge-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("bridge.sqlite").path
        do {
            let store = try BridgeStore(path: path)
            try store.saveSeen(.init(msgid: "m1", time: "2026-11-25T10:00:00.000Z"), channel: "#ops", network: "lab")
            try store.saveSeen(.init(msgid: "m2", time: "2026-11-25T10:00:01.000Z"), channel: "#ops", network: "lab")
            try store.saveSeen(.init(msgid: nil, time: "2026-11-25T10:00:02.000Z"), channel: "#dev", network: "lab")
        }
        let seen = try BridgeStore(path: path).seen()
        #expect(seen["lab"]?["#ops"] == .init(msgid: "m2", time: "2026-11-25T10:00:01.000Z"))
        #expect(seen["lab"]?["#dev"] == .init(msgid: nil, time: "2026-11-25T10:00:02.000Z"))
    }
}
