/// Why the lab could not provide a server or client. Each says how to fix it.
public struct LabError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) { self.description = description }

    static func missing(_ what: String, package: String) -> LabError {
        LabError("\(what) is not installed: run `apt-get install \(package)` (or `bash .ci/install-deps`)")
    }
}
