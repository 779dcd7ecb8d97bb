import Foundation
import GRDB

/// The bridge's state in SQLite (`bridge.database`): where each shadow room stands in its
/// master room's sequence, so that after a restart (SIGKILL included) the bridge asks for
/// exactly the lines it has not relayed to IRC yet, and never relays one twice; and the IRC
/// nick each XMPP user's puppet got on each network, so a restart does not rename them; and
/// the last IRC line seen per channel, where the server keeps history, so a restarted bridge
/// asks for what was said while it was down.
///
/// A position is written before the lines up to it are relayed (`savePosition` is
/// synchronous): a kill can lose the lines in flight, never repeat them (IRC has no way to
/// take a line back). WAL with `synchronous = NORMAL` keeps that write in the OS's hands
/// once it returns, which survives the process however it dies.
public final class BridgeStore: Sendable {
    /// Where a shadow room stands: the master's epoch and the last sequence number it handled.
    public struct Position: Sendable, Hashable {
        public var epoch: String
        public var seq: UInt64

        public init(epoch: String, seq: UInt64) {
            self.epoch = epoch
            self.seq = seq
        }
    }

    private let database: DatabaseQueue
    /// Where it lives, for logs; nil in memory.
    public let path: String?

    /// Opens (creating it and its directory if needed) the database at `path`, or one in memory.
    public init(path: String?) throws {
        database = try SQLiteFile.open(path: path)
        self.path = path
        try Self.migrator.migrate(database)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("shadow positions") { db in
            try db.execute(sql: """
                CREATE TABLE shadow_position (
                    shadow TEXT PRIMARY KEY NOT NULL,
                    master TEXT NOT NULL,
                    epoch TEXT NOT NULL,
                    seq INTEGER NOT NULL
                );
                """)
        }
        migrator.registerMigration("puppet nicks") { db in
            try db.execute(sql: """
                CREATE TABLE puppet_nick (
                    network TEXT NOT NULL,
                    occupant TEXT NOT NULL,
                    room_nick TEXT NOT NULL,
                    irc_nick TEXT NOT NULL,
                    PRIMARY KEY (network, occupant)
                );
                """)
        }
        migrator.registerMigration("irc seen") { db in
            try db.execute(sql: """
                CREATE TABLE irc_seen (
                    network TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    msgid TEXT,
                    time TEXT,
                    PRIMARY KEY (network, channel)
                );
                """)
        }
        return migrator
    }

    /// The newest IRC channel line the bridge relayed, where the server names its lines
    /// (draft/chathistory): a restarted bridge asks for the lines after it.
    public struct Seen: Sendable, Hashable {
        public var msgid: String?
        public var time: String?

        public init(msgid: String?, time: String?) {
            self.msgid = msgid
            self.time = time
        }
    }

    /// Every stored last-seen line by network, then by channel (folded).
    public func seen() throws -> [String: [String: Seen]] {
        try byNetwork(table: "irc_seen", key: "channel") { Seen(msgid: $0["msgid"], time: $0["time"]) }
    }

    /// Forgets the last line seen in channels no longer bridged (`channels`: network, folded channel).
    public func forgetSeen(_ channels: [(network: String, channel: String)]) throws {
        guard !channels.isEmpty else { return }
        try database.write { db in
            for (network, channel) in channels {
                try db.execute(sql: "DELETE FROM irc_seen WHERE network = ? AND channel = ?", arguments: [network, channel])
            }
        }
    }

    /// Records the newest line seen in `channel` on `network`; returns once SQLite has it.
    public func saveSeen(_ seen: Seen, channel: String, network: String) throws {
        try database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO irc_seen (network, channel, msgid, time) VALUES (?, ?, ?, ?)
                    ON CONFLICT(network, channel) DO UPDATE SET msgid = excluded.msgid, time = excluded.time
                    """,
                arguments: [network, channel, seen.msgid, seen.time])
        }
    }

    /// The IRC nick a puppet got, and the room nick it was made from.
    public struct PuppetNick: Sendable, Hashable {
        public var roomNick: String
        public var ircNick: String

        public init(roomNick: String, ircNick: String) {
            self.roomNick = roomNick
            self.ircNick = ircNick
        }
    }

    /// Every stored puppet nick by network, then by occupant (bare JID).
    public func puppetNicks() throws -> [String: [String: PuppetNick]] {
        try byNetwork(table: "puppet_nick", key: "occupant") { PuppetNick(roomNick: $0["room_nick"], ircNick: $0["irc_nick"]) }
    }

    /// Records the nick `occupant`'s puppet has on `network`.
    public func savePuppetNick(_ nick: PuppetNick, occupant: String, network: String) throws {
        try database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO puppet_nick (network, occupant, room_nick, irc_nick) VALUES (?, ?, ?, ?)
                    ON CONFLICT(network, occupant) DO UPDATE SET room_nick = excluded.room_nick, irc_nick = excluded.irc_nick
                    """,
                arguments: [network, occupant, nick.roomNick, nick.ircNick])
        }
    }

    /// Every stored position by shadow room JID, with the master room it refers to.
    public func positions() throws -> [String: (master: String, position: Position)] {
        try database.read { db in
            var positions: [String: (master: String, position: Position)] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM shadow_position") {
                let seq: Int64 = row["seq"]
                positions[row["shadow"]] = (row["master"], Position(epoch: row["epoch"], seq: UInt64(max(0, seq))))
            }
            return positions
        }
    }

    /// Records where `shadow` stands in `master`'s sequence; returns once SQLite has it.
    public func savePosition(_ position: Position, shadow: String, master: String) throws {
        // One statement is its own transaction; prepared once. This runs for every room line.
        try database.writeWithoutTransaction { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO shadow_position (shadow, master, epoch, seq) VALUES (?, ?, ?, ?)
                    ON CONFLICT(shadow) DO UPDATE SET master = excluded.master, epoch = excluded.epoch, seq = excluded.seq
                    """
            ).execute(arguments: [shadow, master, position.epoch, Int64(clamping: position.seq)])
        }
    }

    /// Every row of a per-network table, by network and then by its `key` column.
    private func byNetwork<Value>(table: String, key: String, _ make: (Row) -> Value) throws -> [String: [String: Value]] {
        try database.read { db in
            var values: [String: [String: Value]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM \(table)") {
                let network: String = row["network"], name: String = row[key]
                values[network, default: [:]][name] = make(row)
            }
            return values
        }
    }

    /// Forgets shadow rooms no mapping names any more.
    public func forget(shadows: [String]) throws {
        guard !shadows.isEmpty else { return }
        try database.write { db in
            for shadow in shadows { try db.execute(sql: "DELETE FROM shadow_position WHERE shadow = ?", arguments: [shadow]) }
        }
    }
}
