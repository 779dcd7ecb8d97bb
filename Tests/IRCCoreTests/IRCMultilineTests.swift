import IRCCore
import Testing

@Suite("draft/multiline batches")
struct IRCMultilineTests {
    static func references() -> () -> String {
        var next = 0
        return {
            next += 1
            return "r\(next)"
        }
    }

    @Test("the capability value gives the limits; max-bytes is required")
    func limits() {
        #expect(IRCMultiline(capabilityValue: "max-bytes=4096,max-lines=24") == IRCMultiline(maximumBytes: 4096, maximumLines: 24))
        #expect(IRCMultiline(capabilityValue: "max-bytes=40000") == IRCMultiline(maximumBytes: 40000))
        #expect(IRCMultiline(capabilityValue: "max-lines=24") == nil)
        #expect(IRCMultiline(capabilityValue: "") == nil)
    }

    @Test("several lines go as one batch; a line cut for length carries multiline-concat; one line goes plain")
    func batch() {
        let multiline = IRCMultiline(maximumBytes: 4096)
        let pieces = IRCLineSplitter.pieces("first line\nsecond is longer than twenty bytes", maximumBytes: 20)
        #expect(pieces.map(\.continues) == [false, false, true])
        let lines = multiline.messages(target: "#c", pieces: pieces, reference: Self.references()).map(\.description)
        #expect(lines == [
            "BATCH +r1 draft/multiline #c",
            "@batch=r1 PRIVMSG #c :first line",
            "@batch=r1 PRIVMSG #c :second is longer ",
            "@batch=r1;draft/multiline-concat PRIVMSG #c :than twenty bytes",
            "BATCH -r1",
        ])
        #expect(multiline.messages(target: "#c", pieces: [("just one", false)], reference: Self.references()).map(\.description) == ["PRIVMSG #c :just one"])
    }

    @Test("the limits split the message into several batches, and a batch never starts with a continuation")
    func limitsSplit() {
        let byLines = IRCMultiline(maximumBytes: 4096, maximumLines: 2)
        let five = (1...5).map { ("line \($0)", false) }
        let messages = byLines.messages(target: "#c", pieces: five, reference: Self.references()).map(\.description)
        #expect(messages.filter { $0.hasPrefix("BATCH +") }.count == 2)
        #expect(messages.last == "PRIVMSG #c :line 5", "a lone last line goes plain")
        let byBytes = IRCMultiline(maximumBytes: 10)
        let cut = byBytes.messages(target: "#c", pieces: [("aaaaaa", false), ("bbbbbb", true), ("cc", true)], reference: Self.references()).map(\.description)
        #expect(cut == [
            "PRIVMSG #c aaaaaa",
            "BATCH +r1 draft/multiline #c", "@batch=r1 PRIVMSG #c bbbbbb", "@batch=r1;draft/multiline-concat PRIVMSG #c cc", "BATCH -r1",
        ])
    }

    @Test("one grapheme longer than the limit (Zalgo text) is cut between scalars: no piece exceeds the limit, nothing is lost")
    func hugeGrapheme() {
        let zalgo = "e" + String(repeating: "\u{0301}", count: 300) + " tail"
        let pieces = IRCLineSplitter.pieces(zalgo, maximumBytes: 100)
        #expect(pieces.allSatisfy { $0.text.utf8.count <= 100 }, "\(pieces.map { $0.text.utf8.count })")
        #expect(pieces.map(\.text).joined() == zalgo)
        #expect(pieces.dropFirst().allSatisfy { $0.continues })
    }
}
