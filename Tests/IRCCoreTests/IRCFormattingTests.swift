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

    @Test("XEP-0393 styling from XMPP becomes mIRC codes around the kept directives; invalid spans and code blocks stay as written")
    func stylingToMIRC() {
        #expect(IRCFormatting.mircFromStyling("a *bold* word") == "a \u{2}*bold*\u{2} word")
        #expect(IRCFormatting.mircFromStyling("_it_, ~gone~ and `*raw*`") == "\u{1D}_it_\u{1D}, \u{1E}~gone~\u{1E} and \u{11}`*raw*`\u{11}")
        #expect(IRCFormatting.mircFromStyling("*_both_*") == "\u{2}*\u{1D}_both_\u{1D}*\u{2}")
        for plain in ["snake_case_names", "2*3*4", "* item", "a * b * c", "*open only", "**", "mid*word*s", "~/path and ~/other"] {
            #expect(IRCFormatting.mircFromStyling(plain) == plain, "\(plain)")
        }
        #expect(IRCFormatting.mircFromStyling("```\n*not bold*\n```\n*bold*") == "```\n*not bold*\n```\n\u{2}*bold*\u{2}")
        #expect(IRCFormatting.mircFromStyling("*two\nlines*") == "*two\nlines*", "a span stays on one line")
        // Openings that never close are searched once, not once each.
        let unclosed = String(repeating: " _a *b", count: 600)
        #expect(IRCFormatting.mircFromStyling(unclosed) == unclosed)
        // And back: what IRC shows parses to the same XEP-0393 text.
        #expect(IRCFormatting(parsing: IRCFormatting.mircFromStyling("a *bold* word")).plainText == "a *bold* word")
    }
}
