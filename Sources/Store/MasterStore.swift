import Foundation
import GRDB

/// The master's state in SQLite (DESIGN.md §2: the only module that speaks SQL): rooms with
/// their configuration, affiliations, subject and secret, and the room archive.
///
/// Values come in and go out as plain data; what they mean is the DMUC module's business.
/// Writes are batched by the caller and run on GRDB's writer queue, never on the relay path.
public final class MasterStore: Sendable {
    /// One room as stored. `config` and `affiliations` are JSON written by the room's owner module.
    public struct Room: Sendable, Hashable {
        public var jid: String
        public var rid: String
        public var config: Data
        public var affiliations: Data
        public var subject: String
        public var subjectNick: String?
        public var secret: Data

        public init(jid: String, rid: String, config: Data, affiliations: Data, subject: String, subjectNick: String?, secret: Data) {
            self.jid = jid
            self.rid = rid
            self.config = config
            self.affiliations = affiliations
            self.subject = subject
            self.subjectNick = subjectNick
            self.secret = secret
        }
    }

    /// One archived groupchat message: its public id (the room's stanza-id), the occupant's nick
    /// and the stanza as XML text.
    public struct Message: Sendable, Hashable {
        public var room: String
        public var id: String
        public var date: Date
        public var nick: String
        public var stanza: String

        public init(room: String, id: String, date: Date, nick: String, stanza: String) {
            self.room = room
            self.id = id
            self.date = date
            self.nick = nick
            self.stanza = stanza
        }
    }

    /// Changes gathered since the last write; applied in one transaction.
    public struct Batch: Sendable {
        public var saved: [Room] = []
        /// Rooms no longer kept across restarts (made temporary); their archive stays while they run.
        public var unstored: [String] = []
        /// Rooms gone (destroyed, or temporary and empty): their archive goes with them.
        public var forgotten: [String] = []
        public var archived: [Message] = []

        public init() {}
        public var isEmpty: Bool { saved.isEmpty && unstored.isEmpty && forgotten.isEmpty && archived.isEmpty }
    }

    /// Which messages a query looks at (XEP-0313 filters); ids are archive ids.
    public struct Filter: Sendable, Hashable {
        public var room: String
        public var nick: String?
        public var start: Date?
        public var end: Date?
        public var afterID: String?
        public var beforeID: String?
        public var ids: [String]

        public init(room: String, nick: String? = nil, start: Date? = nil, end: Date? = nil, afterID: String? = nil, beforeID: String? = nil, ids: [String] = []) {
            self.room = room
            self.nick = nick
            self.start = start
            self.end = end
            self.afterID = afterID
            self.beforeID = beforeID
            self.ids = ids
        }
    }

    /// One page of a query: messages oldest first, how many match in all, and whether the page
    /// reaches the end in its direction.
    public struct Page: Sendable {
        public var messages: [Message]
        public var count: Int
        public var complete: Bool
    }

    public enum Failure: Error, Sendable, Hashable {
        /// A paging or filter id that is not in this room's archive.
        case unknownID(String)
    }

    private let database: DatabaseQueue
    /// Where it lives, for logs; nil in memory.
    public let path: String?

    /// Opens (creating it and its directory if needed) the database at `path`, or one in memory.
    public init(path: String?) throws {
        database = try SQLiteFile.open(path: path, foreignKeys: true)
        self.path = path
        try Self.migrator.migrate(database)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("rooms and archive") { db in
            try db.execute(sql: """
                CREATE TABLE room (
                    jid TEXT PRIMARY KEY NOT NULL,
                    rid TEXT NOT NULL,
                    config TEXT NOT NULL,
                    affiliations TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    subject_nick TEXT,
                    secret BLOB NOT NULL
                );
                CREATE TABLE archive (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    room TEXT NOT NULL,
                    id TEXT NOT NULL,
                    date REAL NOT NULL,
                    nick TEXT NOT NULL,
                    stanza TEXT NOT NULL
                );
                CREATE UNIQUE INDEX archive_room_id ON archive(room, id);
                CREATE INDEX archive_room_seq ON archive(room, seq);
                CREATE INDEX archive_date ON archive(date);
                """)
        }
        return migrator
    }

    // MARK: - Rooms

    public func rooms() throws -> [Room] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM room ORDER BY jid").map { row in
                Room(
                    jid: row["jid"], rid: row["rid"], config: Data((row["config"] as String).utf8),
                    affiliations: Data((row["affiliations"] as String).utf8), subject: row["subject"], subjectNick: row["subject_nick"],
                    secret: row["secret"])
            }
        }
    }

    /// Applies a batch in one transaction: messages appended in the order given, rooms saved
    /// whole, rooms unstored, then forgotten rooms deleted with their archive.
    public func write(_ batch: Batch) async throws {
        guard !batch.isEmpty else { return }
        try await database.write { db in
            for room in batch.saved {
                try db.execute(
                    sql: """
                        INSERT INTO room (jid, rid, config, affiliations, subject, subject_nick, secret) VALUES (?, ?, ?, ?, ?, ?, ?)
                        ON CONFLICT(jid) DO UPDATE SET rid = excluded.rid, config = excluded.config, affiliations = excluded.affiliations,
                            subject = excluded.subject, subject_nick = excluded.subject_nick, secret = excluded.secret
                        """,
                    arguments: [
                        room.jid, room.rid, String(decoding: room.config, as: UTF8.self), String(decoding: room.affiliations, as: UTF8.self),
                        room.subject, room.subjectNick, room.secret,
                    ])
            }
            let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO archive (room, id, date, nick, stanza) VALUES (?, ?, ?, ?, ?)")
            for message in batch.archived {
                try insert.execute(arguments: [message.room, message.id, message.date.timeIntervalSince1970, message.nick, message.stanza])
            }
            for jid in batch.unstored + batch.forgotten {
                try db.execute(sql: "DELETE FROM room WHERE jid = ?", arguments: [jid])
            }
            for jid in batch.forgotten {
                try db.execute(sql: "DELETE FROM archive WHERE room = ?", arguments: [jid])
            }
        }
    }

    // MARK: - Archive

    /// The newest `limit` messages of a room, oldest first (history on join after a restart).
    public func recent(room: String, limit: Int) throws -> [Message] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM archive WHERE room = ? ORDER BY seq DESC LIMIT ?", arguments: [room, limit])
                .map(Self.message).reversed()
        }
    }

    /// One page of the messages `filter` selects: after an id (or from the oldest), or before
    /// one (or up to the newest), at most `max`.
    public func page(_ filter: Filter, after: String?, before: String?, fromEnd: Bool, max: Int) async throws -> Page {
        try await database.read { db in
            func seq(_ id: String) throws -> Int64 {
                guard let seq = try Int64.fetchOne(db, sql: "SELECT seq FROM archive WHERE room = ? AND id = ?", arguments: [filter.room, id]) else {
                    throw Failure.unknownID(id)
                }
                return seq
            }
            var conditions = ["room = ?"]
            var arguments: StatementArguments = [filter.room]
            if let nick = filter.nick {
                conditions.append("nick = ?")
                _ = arguments.append(contentsOf: [nick])
            }
            if let start = filter.start {
                conditions.append("date >= ?")
                _ = arguments.append(contentsOf: [start.timeIntervalSince1970])
            }
            if let end = filter.end {
                conditions.append("date <= ?")
                _ = arguments.append(contentsOf: [end.timeIntervalSince1970])
            }
            if let id = filter.afterID {
                conditions.append("seq > ?")
                _ = arguments.append(contentsOf: [try seq(id)])
            }
            if let id = filter.beforeID {
                conditions.append("seq < ?")
                _ = arguments.append(contentsOf: [try seq(id)])
            }
            if !filter.ids.isEmpty {
                conditions.append("id IN (\(Array(repeating: "?", count: filter.ids.count).joined(separator: ", ")))")
                _ = arguments.append(contentsOf: StatementArguments(filter.ids))
            }
            let matching = conditions.joined(separator: " AND ")
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM archive WHERE \(matching)", arguments: arguments) ?? 0
            var pageConditions = matching
            var pageArguments = arguments
            let backwards = before != nil || fromEnd
            if let after {
                pageConditions += " AND seq > ?"
                _ = pageArguments.append(contentsOf: [try seq(after)])
            } else if let before {
                pageConditions += " AND seq < ?"
                _ = pageArguments.append(contentsOf: [try seq(before)])
            }
            _ = pageArguments.append(contentsOf: [max + 1])
            let order = backwards ? "DESC" : "ASC"
            var rows = try Row.fetchAll(db, sql: "SELECT * FROM archive WHERE \(pageConditions) ORDER BY seq \(order) LIMIT ?", arguments: pageArguments)
            let complete = rows.count <= max
            rows = Array(rows.prefix(max))
            if backwards { rows.reverse() }
            return Page(messages: rows.map(Self.message), count: count, complete: complete)
        }
    }

    /// Deletes messages older than `date` (archive retention); returns how many went.
    public func prune(before date: Date) async throws -> Int {
        try await database.write { db in
            try db.execute(sql: "DELETE FROM archive WHERE date < ?", arguments: [date.timeIntervalSince1970])
            return db.changesCount
        }
    }

    /// Deletes the archive of rooms that are no longer stored (temporary rooms of an earlier run).
    public func pruneOrphans() throws -> Int {
        try database.write { db in
            try db.execute(sql: "DELETE FROM archive WHERE room NOT IN (SELECT jid FROM room)")
            return db.changesCount
        }
    }

    private static func message(_ row: Row) -> Message {
        Message(room: row["room"], id: row["id"], date: Date(timeIntervalSince1970: row["date"]), nick: row["nick"], stanza: row["stanza"])
    }
}
