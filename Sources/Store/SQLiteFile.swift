import Foundation
import GRDB

/// How both stores open their SQLite file: its directory created, WAL (a crash loses at most
/// the last transaction) with synchronous NORMAL, a busy timeout; or a database in memory when
/// there is no path.
///
/// The file is locked for this process alone (`locking_mode = EXCLUSIVE`, set before WAL is
/// first used). The bridge writes its position once per relayed line; with shared locking
/// every such commit took six `fcntl` lock calls on the WAL index besides its two writes. No
/// other process opens these files while one runs, and a second `shadowbridge` on the same
/// file now fails its first write instead of sharing state with the first. The lock goes with
/// the process, however it ends.
enum SQLiteFile {
    static func open(path: String?, foreignKeys: Bool = false) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.foreignKeysEnabled = foreignKeys
        configuration.busyMode = .timeout(5)
        guard let path else { return try DatabaseQueue(configuration: configuration) }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
        }
        return try DatabaseQueue(path: path, configuration: configuration)
    }
}
