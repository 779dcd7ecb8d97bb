import Foundation
import Store
import Testing

@Suite struct MasterStoreTests {
    static func room(_ jid: String, subject: String = "") -> MasterStore.Room {
        MasterStore.Room(
            jid: jid, rid: "rid-\(jid)", config: Data(#"{"name":"Ops"}"#.utf8), affiliations: Data(#"{"a@x":"owner"}"#.utf8), subject: subject,
            subjectNick: "alice", secret: Data(repeating: 7, count: 32))
    }

    static func messages(_ room: String, count: Int, from start: Int = 0) -> [MasterStore.Message] {
        (start..<(start + count)).map { i in
            MasterStore.Message(
                room: room, id: "m\(i)", date: Date(timeIntervalSince1970: 1_000_000 + Double(i)), nick: i % 2 == 0 ? "alice" : "bob",
                stanza: "<message type='groupchat'><body>line \(i)</body></message>")
        }
    }

    @Test func roomsAndArchiveSurviveReopening() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("state/master.sqlite").path
        do {
            let store = try MasterStore(path: path)
            var batch = MasterStore.Batch()
            batch.saved = [Self.room("ops@rooms.test", subject: "hello"), Self.room("dev@rooms.test")]
            batch.archived = Self.messages("ops@rooms.test", count: 3)
            try await store.write(batch)
            var update = MasterStore.Batch()
            update.saved = [Self.room("ops@rooms.test", subject: "changed")]
            try await store.write(update)
        }
        let reopened = try MasterStore(path: path)
        let rooms = try reopened.rooms()
        #expect(rooms.map(\.jid) == ["dev@rooms.test", "ops@rooms.test"])
        #expect(rooms.last?.subject == "changed")
        #expect(rooms.last?.secret == Data(repeating: 7, count: 32))
        #expect(try reopened.recent(room: "ops@rooms.test", limit: 2).map(\.id) == ["m1", "m2"])
    }

    @Test func forgottenRoomsTakeTheirArchiveUnstoredOnesKeepIt() async throws {
        let store = try MasterStore(path: nil)
        var batch = MasterStore.Batch()
        batch.saved = [Self.room("a@r"), Self.room("b@r")]
        batch.archived = Self.messages("a@r", count: 2) + Self.messages("b@r", count: 2)
        try await store.write(batch)
        var removal = MasterStore.Batch()
        removal.forgotten = ["a@r"]
        removal.unstored = ["b@r"]
        try await store.write(removal)
        #expect(try store.rooms().isEmpty)
        #expect(try store.recent(room: "a@r", limit: 10).isEmpty)
        #expect(try store.recent(room: "b@r", limit: 10).count == 2)
        // At the next start, the archive of a room no longer stored goes.
        #expect(try store.pruneOrphans() == 2)
    }

    @Test func pagesForwardAndBackwardWithCountAndCompleteness() async throws {
        let store = try MasterStore(path: nil)
        var batch = MasterStore.Batch()
        batch.archived = Self.messages("r@x", count: 7) + Self.messages("other@x", count: 3)
        try await store.write(batch)
        let all = MasterStore.Filter(room: "r@x")
        let first = try await store.page(all, after: nil, before: nil, fromEnd: false, max: 3)
        #expect(first.messages.map(\.id) == ["m0", "m1", "m2"])
        #expect(first.count == 7 && !first.complete)
        let next = try await store.page(all, after: "m5", before: nil, fromEnd: false, max: 3)
        #expect(next.messages.map(\.id) == ["m6"] && next.complete)
        let last = try await store.page(all, after: nil, before: nil, fromEnd: true, max: 3)
        #expect(last.messages.map(\.id) == ["m4", "m5", "m6"] && !last.complete)
        let earlier = try await store.page(all, after: nil, before: "m2", fromEnd: false, max: 3)
        #expect(earlier.messages.map(\.id) == ["m0", "m1"] && earlier.complete)
        let bob = try await store.page(MasterStore.Filter(room: "r@x", nick: "bob"), after: nil, before: nil, fromEnd: false, max: 10)
        #expect(bob.messages.map(\.id) == ["m1", "m3", "m5"] && bob.count == 3)
        let window = MasterStore.Filter(
            room: "r@x", start: Date(timeIntervalSince1970: 1_000_002), end: Date(timeIntervalSince1970: 1_000_004))
        #expect(try await store.page(window, after: nil, before: nil, fromEnd: false, max: 10).messages.map(\.id) == ["m2", "m3", "m4"])
        let byID = MasterStore.Filter(room: "r@x", afterID: "m3", beforeID: "m6")
        #expect(try await store.page(byID, after: nil, before: nil, fromEnd: false, max: 10).messages.map(\.id) == ["m4", "m5"])
        let ids = MasterStore.Filter(room: "r@x", ids: ["m6", "m1", "nope"])
        #expect(try await store.page(ids, after: nil, before: nil, fromEnd: false, max: 10).messages.map(\.id) == ["m1", "m6"])
        let empty = try await store.page(all, after: nil, before: nil, fromEnd: false, max: 0)
        #expect(empty.messages.isEmpty && empty.count == 7)
    }

    @Test func anIDFromAnotherRoomIsUnknown() async throws {
        let store = try MasterStore(path: nil)
        var batch = MasterStore.Batch()
        batch.archived = Self.messages("r@x", count: 2) + Self.messages("other@x", count: 5, from: 10)
        try await store.write(batch)
        await #expect(throws: MasterStore.Failure.unknownID("m12")) {
            try await store.page(MasterStore.Filter(room: "r@x"), after: "m12", before: nil, fromEnd: false, max: 5)
        }
    }

    @Test func retentionDeletesOnlyOlderMessages() async throws {
        let store = try MasterStore(path: nil)
        var batch = MasterStore.Batch()
        batch.archived = Self.messages("r@x", count: 5)
        try await store.write(batch)
        #expect(try await store.prune(before: Date(timeIntervalSince1970: 1_000_003)) == 3)
        #expect(try store.recent(room: "r@x", limit: 10).map(\.id) == ["m3", "m4"])
    }
}
