@testable import Configuration
import Foundation

/// A directory of the fuzzer's own for the file under test: the loaders read paths, as the
/// process does, so relative paths in the input (mappings, secret files) resolve inside it.
nonisolated(unsafe) let directory: String = {
    var template = Array("/tmp/config-fuzz-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { fatalError("mkdtemp failed") }
    return String(cString: made)
}()

/// libFuzzer entry: the input is written as a config file and as a mapping file and loaded as
/// both (TOML parsing in TOMLKit's C++, then our readers). Loading either succeeds or throws a
/// ConfigurationError; any crash, trap, hang or sanitizer report is a bug. An error about the
/// file itself points at a line that exists in it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfiguration(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let path = directory + "/input.toml"
    let bytes = Data(bytes: data, count: size)
    guard FileManager.default.createFile(atPath: path, contents: bytes) else { fatalError("cannot write \(path)") }
    let lineCount = bytes.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
    func check(_ error: ConfigurationError) {
        for mistake in error.all where mistake.file == path {
            if mistake.message.isEmpty { fatalError("an error without a message: \(mistake)") }
            if let line = mistake.line, !(1...lineCount).contains(line) {
                fatalError("line \(line) of a \(lineCount)-line file: \(mistake)")
            }
        }
    }
    do { _ = try ShadowbridgeConfiguration.load(path: path) } catch { check(error) }
    do { _ = try Network.load(path: path, masterDomain: "rooms.example.org") } catch { check(error) }
    return 0
}
