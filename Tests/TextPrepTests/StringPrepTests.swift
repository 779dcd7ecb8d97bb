import Testing
import TextPrep

/// Vectors for the XMPP stringprep profiles (RFC 3920 Appendix A/B, RFC 3491) through ICU.
@Suite("Stringprep")
struct StringPrepTests {
    @Test("nodeprep case-folds and applies NFKC", arguments: [
        ("Alice", "alice"), ("ÄLICE", "älice"), ("\u{FB01}nance", "finance"), ("ΣΑΣ", "σασ"), ("#ops%example", "#ops%example"),
        ("Stra\u{DF}e", "strasse"),
    ])
    func nodeprep(input: String, expected: String) {
        #expect(StringPrep.nodeprep(input) == expected)
    }

    @Test("nodeprep prohibits what RFC 3920 forbids in local parts", arguments: ["a b", "a@b", "a:b", "a/b", "a<b", "a'b", "a\"b", "a&b", "\u{7}", "a\u{FFFD}\u{E0001}"])
    func nodeprepProhibited(input: String) {
        #expect(StringPrep.nodeprep(input) == nil)
    }

    @Test("resourceprep keeps case, allows spaces and unassigned code points, applies NFKC", arguments: [
        ("Alice", "Alice"), ("Jürgen Müller", "Jürgen Müller"), ("\u{216B}", "XII"), ("😀 party", "😀 party"), ("x\u{E0200}", nil as String?),
    ])
    func resourceprep(input: String, expected: String?) {
        if let expected {
            #expect(StringPrep.resourceprep(input) == expected)
        } else {
            // Unassigned in ICU 72 (a private plane tag): allowed for resources.
            #expect(StringPrep.resourceprep(input) != nil)
        }
    }

    @Test("resourceprep prohibits controls and mixed-direction text")
    func resourceprepProhibited() {
        #expect(StringPrep.resourceprep("bad\u{0}") == nil)
        #expect(StringPrep.resourceprep("line\nbreak") == nil)
        #expect(StringPrep.resourceprep("\u{05D0}a") == nil)  // RandALCat with LCat (RFC 3454 §6)
    }

    @Test("nameprep lowercases and maps full-width letters")
    func nameprep() {
        #expect(StringPrep.nameprep("Rooms.Example.ORG") == "rooms.example.org")
        #expect(StringPrep.nameprep("\u{FF25}\u{FF38}\u{FF21}MPLE.org") == "example.org")
    }
}

@Suite("Transliteration to ASCII (IRC nicks)")
struct TransliterationTests {
    @Test("Latin with diacritics, Cyrillic, Greek and Han become ASCII letters; ASCII is untouched", arguments: [
        ("Jürgen", "Jurgen"), ("Дмитрий", "Dmitrij"), ("Ñoño", "Nono"), ("Ελένη", "Elene"), ("张伟", "zhang wei"),
        ("Zoë_[away]", "Zoe_[away]"), ("plain", "plain"), ("", ""),
    ])
    func ascii(_ input: String, _ expected: String) {
        #expect(Transliteration.ascii(input) == expected)
    }

    @Test("what has no Latin form stays for the caller to replace; a long nick is whole")
    func leftovers() {
        #expect(Transliteration.ascii("cat 🐱").hasPrefix("cat "))
        let long = String(repeating: "ü", count: 3000)
        #expect(Transliteration.ascii(long) == String(repeating: "u", count: 3000))
    }
}
