import TOMLKit

/// A parsed TOML file plus what TOMLKit does not give: the line where a key was written, so
/// that a wrong value is reported with file, line and key.
struct TOMLDocument {
    let path: String
    let table: TOMLTable
    private let lines: [Substring]

    init(path: String, text: String) throws(ConfigurationError) {
        self.path = path
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if let (line, column) = Self.headerWithoutKey(in: text) {
            throw ConfigurationError(
                file: path, line: line, column: column,
                message: "TOML syntax error: a table header starts with a key, as in [network], [[channel]] or [\"quoted key\"]")
        }
        do {
            self.table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(
                file: path, line: error.source.begin.line, column: error.source.begin.column,
                message: "TOML syntax error: \(error.description)")
        } catch {
            throw ConfigurationError(file: path, message: "TOML syntax error: \(error)")
        }
    }

    /// Where a table header does not start with a key (`[#ops]`, `[=]`, `[` and then the end
    /// of the line), or nil. TOMLKit's toml++ asserts on such a header, so the process would
    /// abort instead of reporting it (found by the config fuzzer): it is found here first.
    /// A light scan: comments, strings (one-line and multi-line) and open arrays and inline
    /// tables are skipped, so a `[` inside a value is never taken for a header.
    static func headerWithoutKey(in text: String) -> (line: Int, column: Int)? {
        let bytes = Array(text.utf8)
        // toml++ skips a UTF-8 byte order mark; so does this scan (found in review).
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var line = 1
        var lineStart = i
        var depth = 0
        var atLineStart = true
        func isBlank(_ c: UInt8) -> Bool { c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") }
        func startsKey(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
                || [UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "\""), UInt8(ascii: "'"), UInt8(ascii: "]")].contains(c)
        }
        func newline(at index: Int) {
            line += 1
            lineStart = index + 1
        }
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\n") {
                newline(at: i)
                atLineStart = true
                i += 1
                continue
            }
            if isBlank(c) || c == UInt8(ascii: "\r") {
                i += 1
                continue
            }
            if c == UInt8(ascii: "#") {
                while i < bytes.count, bytes[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            }
            if atLineStart, depth == 0, c == UInt8(ascii: "[") {
                var j = i + 1
                while j < bytes.count, isBlank(bytes[j]) { j += 1 }
                if j < bytes.count, bytes[j] == UInt8(ascii: "[") {
                    j += 1
                    while j < bytes.count, isBlank(bytes[j]) { j += 1 }
                }
                if j < bytes.count, !startsKey(bytes[j]) { return (line, j - lineStart + 1) }
                // The rest of a header is on its line; a quoted key in it may hold anything.
                while i < bytes.count, bytes[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            }
            atLineStart = false
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                let escapes = c == UInt8(ascii: "\"")
                let triple = i + 2 < bytes.count && bytes[i + 1] == c && bytes[i + 2] == c
                i += triple ? 3 : 1
                while i < bytes.count {
                    let d = bytes[i]
                    if escapes, d == UInt8(ascii: "\\") {
                        if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\n") { newline(at: i + 1) }
                        i += 2
                        continue
                    }
                    if d == UInt8(ascii: "\n") {
                        if !triple { break }  // an unclosed one-line string: toml++ reports it
                        newline(at: i)
                    }
                    if d == c, !triple || (i + 2 < bytes.count && bytes[i + 1] == c && bytes[i + 2] == c) {
                        i += triple ? 3 : 1
                        // `""""a""""`: up to two more quotes belong to the string (TOML 1.0).
                        if triple {
                            for _ in 0..<2 where i < bytes.count && bytes[i] == c { i += 1 }
                        }
                        break
                    }
                    i += 1
                }
                continue
            }
            if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") { depth += 1 }
            if c == UInt8(ascii: "]") || c == UInt8(ascii: "}") { depth = max(0, depth - 1) }
            i += 1
        }
        return nil
    }

    func error(_ keyPath: String, _ message: String) -> ConfigurationError {
        ConfigurationError(file: path, line: line(of: keyPath), key: keyPath, message: message)
    }

    /// The line of `a.b.c` (or `channel[2].room`): the header of the innermost table named on
    /// the path, then the first `c =` after it. Good enough for files people write by hand.
    func line(of keyPath: String) -> Int? {
        let parts = keyPath.split(separator: ".").map(String.init)
        guard let last = parts.last else { return nil }
        var start = 0
        var tablePath: [String] = []
        for part in parts.dropLast() {
            var name = part
            var index = 0
            if let open = part.firstIndex(of: "["), let close = part.firstIndex(of: "]"), open < close,
                let n = Int(part[part.index(after: open)..<close])
            {
                name = String(part[..<open])
                index = n
            }
            tablePath.append(name)
            let header = tablePath.joined(separator: ".")
            var seen = -1
            for (i, line) in lines.enumerated().dropFirst(start) {
                let trimmed = line.trimmingPrefix(while: { $0 == " " || $0 == "\t" })
                if trimmed.hasPrefix("[[\(header)]]") || trimmed.hasPrefix("[\(header)]") {
                    seen += 1
                    if seen == index {
                        start = i + 1
                        break
                    }
                }
            }
        }
        for (i, line) in lines.enumerated().dropFirst(start) {
            let trimmed = line.trimmingPrefix(while: { $0 == " " || $0 == "\t" })
            if trimmed.hasPrefix("[") && i > start { break }
            if trimmed.hasPrefix(last) {
                let rest = trimmed.dropFirst(last.count).trimmingPrefix(while: { $0 == " " || $0 == "\t" })
                if rest.hasPrefix("=") { return i + 1 }
            }
        }
        if start > 0 { return start }
        return nil
    }
}

/// Typed reads of one table, each failing with the key's path.
struct TableReader {
    let document: TOMLDocument
    let table: TOMLTable
    let path: String
    private(set) var known: Set<String> = []

    init(document: TOMLDocument, table: TOMLTable, path: String) {
        self.document = document
        self.table = table
        self.path = path
    }

    func keyPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    mutating func string(_ key: String) throws(ConfigurationError) -> String? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        guard let s = value.string else { throw document.error(keyPath(key), "must be a string") }
        return s
    }

    /// A secret given inline as `key` (tests and demos) or read from the file `key_file`
    /// (trimmed), not both; nil when neither is given.
    mutating func secret(_ key: String) throws(ConfigurationError) -> (value: String, inline: Bool)? {
        let inline = try string(key)
        let file = try string(key + "_file")
        switch (inline, file) {
        case (let value?, nil):
            return (value, true)
        case (nil, let file?):
            let fileKey = keyPath(key + "_file")
            let text = try ShadowbridgeConfiguration.readText(file, file: document.path, key: fileKey, line: document.line(of: fileKey))
            return (text.trimmingCharacters(in: .whitespacesAndNewlines), false)
        case (.some, .some):
            throw document.error(keyPath(key), "give \(key) or \(key)_file, not both")
        case (nil, nil):
            return nil
        }
    }

    mutating func requiredString(_ key: String) throws(ConfigurationError) -> String {
        guard let s = try string(key) else {
            throw ConfigurationError(file: document.path, line: document.line(of: path.isEmpty ? key : path + "._"), key: keyPath(key), message: "is required")
        }
        return s
    }

    mutating func int(_ key: String) throws(ConfigurationError) -> Int? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        guard let n = value.int else { throw document.error(keyPath(key), "must be an integer") }
        return n
    }

    mutating func double(_ key: String) throws(ConfigurationError) -> Double? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        if let n = value.int { return Double(n) }
        guard let d = value.double else { throw document.error(keyPath(key), "must be a number") }
        return d
    }

    mutating func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        guard let b = value.bool else { throw document.error(keyPath(key), "must be true or false") }
        return b
    }

    mutating func strings(_ key: String) throws(ConfigurationError) -> [String]? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        guard let array = value.array else { throw document.error(keyPath(key), "must be an array of strings") }
        var out: [String] = []
        for item in array {
            guard let s = item.string else { throw document.error(keyPath(key), "must be an array of strings") }
            out.append(s)
        }
        return out
    }

    mutating func table(_ key: String) throws(ConfigurationError) -> TOMLTable? {
        known.insert(key)
        guard let value = table[key] else { return nil }
        guard let t = value.table else { throw document.error(keyPath(key), "must be a table") }
        return t
    }

    mutating func tables(_ key: String) throws(ConfigurationError) -> [TOMLTable] {
        known.insert(key)
        guard let value = table[key] else { return [] }
        guard let array = value.array else { throw document.error(keyPath(key), "must be an array of tables ([[\(keyPath(key))]])") }
        var out: [TOMLTable] = []
        for item in array {
            guard let t = item.table else { throw document.error(keyPath(key), "must be an array of tables ([[\(keyPath(key))]])") }
            out.append(t)
        }
        return out
    }

    /// Fails on the first key nobody asked for: a typo must not be silently ignored.
    func rejectUnknownKeys() throws(ConfigurationError) {
        for key in table.keys.sorted() where !known.contains(key) {
            throw document.error(keyPath(key), "unknown key")
        }
    }
}
