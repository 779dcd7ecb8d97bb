import Foundation
import Logging

/// One line per record on stderr: `time level [role] message key=value...`, metadata sorted.
struct StderrLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    let label: String

    init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = self.metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        var line = Date.now.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true))
        line += " \(event.level)"
        if let role = all.removeValue(forKey: "role") { line += " [\(role)]" }
        line += " \(event.message)"
        for key in all.keys.sorted() { line += " \(key)=\(all[key]!)" }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
