import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A child process we started and must stop: by PID, TERM first, KILL after a grace period.
///
/// Spawned with `posix_spawn` rather than Foundation's `Process`: a child inherits the
/// spawning thread's signal mask, and Swift's concurrency threads block most signals, so a
/// server started from a task would ignore SIGTERM until killed. Here the child starts with
/// an empty mask, default dispositions and its own process group (a terminal's Ctrl-C reaches
/// only us, and we stop our servers in order).
public final class ManagedProcess: Sendable {
    public let name: String
    public let pid: pid_t
    public let logFile: URL?
    /// The write end of the child's stdin, when asked for.
    public let standardInput: FileHandle?
    /// The read end of the child's stdout, when asked for.
    public let standardOutput: FileHandle?
    private let exit = Mutex<Int32?>(nil)

    /// Starts `executable`. Output goes to `logFile` (or nowhere) unless `pipeStandardOutput`;
    /// stdin is empty unless `pipeStandardInput`.
    public init(
        name: String, executable: String, arguments: [String], directory: URL? = nil, logFile: URL? = nil,
        pipeStandardInput: Bool = false, pipeStandardOutput: Bool = false
    ) throws {
        self.name = name
        self.logFile = logFile
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var stdinPipe: [Int32] = [-1, -1]
        var stdoutPipe: [Int32] = [-1, -1]
        if pipeStandardInput {
            guard pipe(&stdinPipe) == 0 else { throw LabError("pipe() failed") }
            posix_spawn_file_actions_adddup2(&actions, stdinPipe[0], 0)
            posix_spawn_file_actions_addclose(&actions, stdinPipe[1])
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if pipeStandardOutput {
            guard pipe(&stdoutPipe) == 0 else { throw LabError("pipe() failed") }
            posix_spawn_file_actions_adddup2(&actions, stdoutPipe[1], 1)
            posix_spawn_file_actions_addclose(&actions, stdoutPipe[0])
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, logFile?.path ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        }
        if let logFile, pipeStandardOutput {
            posix_spawn_file_actions_addopen(&actions, 2, logFile.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // posix_spawn_file_actions_addchdir_np is not visible from Swift: coreutils' env -C
        // changes directory and execs, so the PID is still the program's.
        let program = directory == nil ? executable : "/usr/bin/env"
        let argumentList = directory.map { ["/usr/bin/env", "-C", $0.path, executable] + arguments } ?? [executable] + arguments
        let argv = argumentList.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, program, &actions, &attributes, argv, environ)
        if pipeStandardInput { close(stdinPipe[0]) }
        if pipeStandardOutput { close(stdoutPipe[1]) }
        guard status == 0 else {
            throw LabError("cannot start \(executable): \(String(cString: strerror(status)))")
        }
        pid = child
        standardInput = pipeStandardInput ? FileHandle(fileDescriptor: stdinPipe[1], closeOnDealloc: true) : nil
        standardOutput = pipeStandardOutput ? FileHandle(fileDescriptor: stdoutPipe[0], closeOnDealloc: true) : nil
    }

    /// False once the process has exited (it is reaped here).
    public var isRunning: Bool {
        exit.withLock { exitStatus in
            guard exitStatus == nil else { return false }
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result == -1 && errno == ECHILD) {
                exitStatus = status
                return false
            }
            return true
        }
    }

    /// The raw wait status once exited: 0 is a clean exit.
    public var exitStatus: Int32? {
        _ = isRunning
        return exit.withLock { $0 }
    }

    public func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

    /// TERM, then KILL after `grace` seconds; returns once the process is gone.
    public func stop(grace: Double = 5) {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if !waitForExit(timeout: grace) {
            kill(pid, SIGKILL)
            _ = waitForExit(timeout: 5)
        }
    }

    /// True when the process exited within `timeout` seconds.
    public func waitForExit(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning {
            if Date() >= deadline { return false }
            usleep(10_000)
        }
        return true
    }

    /// The log so far, for diagnostics.
    public func log() -> String {
        guard let logFile, let data = FileManager.default.contents(atPath: logFile.path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    deinit { stop(grace: 2) }
}
