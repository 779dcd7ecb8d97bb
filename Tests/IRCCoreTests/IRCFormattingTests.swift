import IRCCore
import Testing

@Suite("mIRC formatting")
struct IRCFormattingTests {
    @Test("colours are dropped with their digits; bold, italic, strike and monospace map to XEP-0393")
    func styling() {
        let line = "\u{2}bold\u{2} and \u{3}04,01red\u{3} text, \u{1D}italic\u{1D}, \u{1E}gone\u{1E}, \u{11}code\u{11}, \u{4}FF0000hex\u{F} done"
        let formatting = IRCFormatting(parsing: line)
        #expect(formatting.plainText == "bold and red text, italic, gone, code, hex done")
        #expect(formatting.styledText == "*bold* and red text, _italic_, ~gone~, `code`, hex done")
    }

    @Test("digits after a colour code that are not part of it stay; a comma without a background stays")
    func colourEdges() {
        #expect(IRCFormatting(parsing: "\u{3}4123").plainText == "23")
        #expect(IRCFormatting(parsing: "\u{3}12,text").plainText == ",text")
        #expect(IRCFormatting(parsing: "\u{3},5x").plainText == ",5x")
        #expect(IRCFormatting(parsing: "plain").styledText == "plain")
    }

    @Test("a styled span with spaces at its edges is not wrapped (XEP-0393 §6.2)")
    func edges() {
        #expect(IRCFormatting(parsing: "a\u{2} b \u{2}c").styledText == "a b c")
        #expect(IRCFormatting(parsing: "\u{2}\u{1D}both\u{F}").styledText == "*_both_*")
    }
}
