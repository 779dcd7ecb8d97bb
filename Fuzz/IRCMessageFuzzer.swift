import IRCCore

/// libFuzzer entry: any line parses or fails cleanly; whatever parses encodes to one line with
/// no CR, LF or NUL inside, and that line parses again.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIRCMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let message = try? IRCMessage(parsing: bytes) else { return 0 }
    let line = message.encoded()
    if line.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) { fatalError("encoded line carries CR, LF or NUL") }
    guard (try? IRCMessage(parsing: line)) != nil else { fatalError("an encoded message does not parse") }
    _ = IRCLineSplitter.split(message.parameters.last ?? "", maximumBytes: 64)
    // The mIRC formatting parser sees every parameter too: never a crash, and the plain text
    // never contains a formatting control character.
    let formatting = IRCFormatting(parsing: message.parameters.last ?? "")
    if formatting.plainText.unicodeScalars.contains(where: { [0x02, 0x03, 0x04, 0x0F, 0x11, 0x16, 0x1D, 0x1E, 0x1F].contains($0.value) }) {
        fatalError("formatting left a control character in the plain text")
    }
    _ = formatting.styledText
    return 0
}
