import Foundation

/// Helpers to run real servers on loopback for tests and the demo: temporary directories,
/// free ports, executables, readiness.
public enum Lab {
    /// A new directory under the system's temporary directory.
    public static func makeTemporaryDirectory(prefix: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago. Another process may take it before
    /// we use it: server starts retry with new ports when a server does not come up.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LabError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw LabError("bind() failed") }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw LabError("getsockname() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A TCP socket connected to 127.0.0.1:`port`, or nil; the caller closes it.
    static func connectLoopback(port: Int) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            return nil
        }
        return fd
    }

    /// True when something accepts TCP connections on 127.0.0.1:`port`.
    public static func isListening(port: Int) -> Bool {
        guard let fd = connectLoopback(port: port) else { return false }
        close(fd)
        return true
    }

    /// `GET path` on 127.0.0.1:`port` over HTTP/1.0; the response body, or nil.
    public static func httpGet(port: Int, path: String) -> String? {
        guard let fd = connectLoopback(port: port) else { return nil }
        defer { close(fd) }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            response += buffer[0..<n]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.") && text.contains(" 200 "), let split = text.range(of: "\r\n\r\n") else { return nil }
        return String(text[split.upperBound...])
    }

    /// Waits until every port listens, or the process dies, or `timeout` passes.
    static func waitUntilListening(_ ports: [Int], process: ManagedProcess, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !process.isRunning { return false }
            if ports.allSatisfy(isListening) { return true }
            usleep(30_000)
        }
        return false
    }

    /// The absolute path of an executable on PATH (or the usual system directories).
    public static func executable(_ name: String, package: String) throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/usr/bin:/sbin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw LabError.missing(name, package: package)
    }

    /// Runs a command to completion; throws with its output when it fails.
    public static func runCommand(_ executable: String, _ arguments: [String]) throws {
        _ = try commandOutput(executable, arguments)
    }

    /// Runs a command to completion and returns what it printed (stdout and stderr); throws
    /// with that output when it fails.
    public static func commandOutput(_ executable: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw LabError("\(executable) \(arguments.joined(separator: " ")) failed: \(output)")
        }
        return output
    }

    /// Removes a lab directory, unless `SHADOWBRIDGE_KEEP_LAB` is set (to read the servers'
    /// and the bridge's logs after a failure).
    public static func removeUnlessKept(_ directory: URL) {
        if ProcessInfo.processInfo.environment["SHADOWBRIDGE_KEEP_LAB"] != nil {
            FileHandle.standardError.write(Data("lab kept at \(directory.path)\n".utf8))
            return
        }
        try? FileManager.default.removeItem(at: directory)
    }

    static func write(_ text: String, to url: URL) throws {
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    /// Starts a server up to three times with fresh ports: a free port can be taken by
    /// another process between our check and the server's bind.
    static func withPortRetries<T>(_ attempt: () throws -> T?) throws -> T {
        for _ in 0..<3 {
            if let started = try attempt() { return started }
        }
        throw LabError("the server did not start after three attempts")
    }
}
