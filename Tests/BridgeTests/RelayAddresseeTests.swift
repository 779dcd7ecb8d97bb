import Testing

@testable import Bridge

/// `/msg bridge nick: text` in relay mode: whom the line names among the relayed occupants.
@Suite("Relay mode: a private line to the bridge names its relayed occupant")
struct RelayAddresseeTests {
    /// `nick|text`, or nil.
    private func named(_ text: String, among nicks: [String]) -> String? {
        BridgeService.addressee(of: text, among: nicks).map { "\($0.roomNick)|\($0.body)" }
    }

    @Test("nick: text and nick, text; spaces around the mark are allowed")
    func plain() {
        #expect(named("xanna: hello there", among: ["xanna", "bob"]) == "xanna|hello there")
        #expect(named("  bob , hi", among: ["xanna", "bob"]) == "bob|hi")
    }

    @Test("room nicks with : or , are addressable: the longest nick the line starts with wins")
    func nicksWithMarks() {
        let nicks = ["a", "a:b", "c,d"]
        #expect(named("a:b: hi", among: nicks) == "a:b|hi")
        #expect(named("a: b", among: nicks) == "a|b")
        #expect(named("c,d, hello", among: nicks) == "c,d|hello")
    }

    @Test("an exact nick wins over one that differs only in case; case is forgiven otherwise")
    func caseOfNicks() {
        #expect(named("Bob: hi", among: ["bob", "Bob"]) == "Bob|hi")
        #expect(named("BOB: hi", among: ["bob"]) == "bob|hi")
    }

    @Test("no mark, an empty text or an unknown nick names nobody")
    func nobody() {
        #expect(named("xanna hello", among: ["xanna"]) == nil)
        #expect(named("xanna:   ", among: ["xanna"]) == nil)
        #expect(named("zed: hi", among: ["xanna"]) == nil)
        #expect(named("", among: ["xanna"]) == nil)
        #expect(named("hi", among: []) == nil)
    }
}
