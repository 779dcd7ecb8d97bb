import Foundation
import GRDB

/// How both stores open their SQLite file: its directory created, WAL (readers never wait,
/// a crash loses at most the last transaction) with synchronous NORMAL, a busy timeout; or a
/// database in memory when there is no path.
enum SQLiteFile {
    static func open(path: String?, foreignKeys: Bool = false) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = foreignKeys
        configuration.busyMode = .timeout(5)
        guard let path else { return try DatabaseQueue(configuration: configuration) }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
        }
        return try DatabaseQueue(path: path, configuration: configuration)
    }
}
