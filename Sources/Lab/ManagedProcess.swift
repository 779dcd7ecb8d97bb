import Foundation

/// A child process we started and must stop: by PID, TERM first, KILL after a grace period.
///
/// `@unchecked Sendable`: the wrapped `Process` is only touched through its thread-safe
/// `processIdentifier`/`isRunning`/`terminationStatus` and our own lock-free signalling.
public final class ManagedProcess: @unchecked Sendable {
    public let name: String
    let process: Process
    public let logFile: URL?

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Starts `executable` with `arguments`; stdout and stderr go to `logFile` (or nowhere).
    public init(
        name: String, executable: String, arguments: [String], directory: URL? = nil, logFile: URL? = nil,
        environment: [String: String]? = nil, stdin: FileHandle? = nil
    ) throws {
        self.name = name
        self.logFile = logFile
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        if let environment { process.environment = environment }
        if let logFile {
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
            let handle = try FileHandle(forWritingTo: logFile)
            process.standardOutput = handle
            process.standardError = handle
        } else {
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
        }
        process.standardInput = stdin ?? FileHandle.nullDevice
        try process.run()
    }

    /// Takes charge of a configured, not yet started `Process` (when the caller needs pipes).
    public init(wrapping process: Process, name: String) throws {
        self.name = name
        self.logFile = nil
        self.process = process
        try process.run()
    }

    /// Sends `signal` to the process.
    public func signal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }

    /// TERM, then KILL after `grace` seconds; returns once the process is gone.
    public func stop(grace: Double = 5) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        if !waitForExit(timeout: grace) {
            kill(process.processIdentifier, SIGKILL)
            _ = waitForExit(timeout: 5)
        }
    }

    /// True when the process exited within `timeout` seconds.
    public func waitForExit(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return !process.isRunning
    }

    public var exitStatus: Int32? { process.isRunning ? nil : process.terminationStatus }

    /// The log so far, for diagnostics.
    public func log() -> String {
        guard let logFile, let data = FileManager.default.contents(atPath: logFile.path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    deinit { stop(grace: 2) }
}
