import Testing

@testable import Bridge

/// PROTOCOL §5's nick rules for puppets, one by one.
@Suite("Puppet nicks: XMPP room nicks as IRC nicks")
struct PuppetNickTests {
    @Test("transliterated to ASCII: Jürgen, Дмитрий, 李小龙")
    func transliterated() {
        #expect(PuppetNick.make(template: "{nick}", nick: "Jürgen") == "Jurgen")
        #expect(PuppetNick.make(template: "{nick}", nick: "Дмитрий") == "Dmitrij")
        #expect(PuppetNick.make(template: "{nick}", nick: "李小龙", maximumLength: 30).allSatisfy { $0.isASCII })
    }

    @Test("characters IRC forbids become _, the ones it allows stay")
    func disallowedCharacters() {
        #expect(PuppetNick.make(template: "{nick}", nick: "a b!c@d") == "a_b_c_d")
        #expect(PuppetNick.make(template: "{nick}", nick: "x[]\\`^{|}-y", maximumLength: 30) == "x[]\\`^{|}-y")
        #expect(PuppetNick.make(template: "{nick}", nick: "#chan,:x", maximumLength: 30) == "_chan__x")
    }

    @Test("never starts with a digit or -")
    func leadingDigitOrDash() {
        #expect(PuppetNick.make(template: "{nick}", nick: "2pac") == "_2pac")
        #expect(PuppetNick.make(template: "{nick}", nick: "-dash") == "_-dash")
        #expect(PuppetNick.make(template: "{nick}", nick: "Ödön") == "Odon", "a letter that transliterates stays first")
    }

    @Test("cut to NICKLEN, template included")
    func cutToNickLength() {
        #expect(PuppetNick.make(template: "{nick}", nick: "abcdefghijklmnop") == "abcdefghi")
        #expect(PuppetNick.make(template: "{nick}", nick: "abcdefghijklmnop", maximumLength: 30) == "abcdefghijklmnop")
        #expect(PuppetNick.make(template: "{nick}[x]", nick: "alexandra", maximumLength: 9) == "alexandra")
        #expect(PuppetNick.make(template: "{nick}[x]", nick: "bob", maximumLength: 9) == "bob[x]")
    }

    @Test("a nick of nothing IRC can carry still gives a nick")
    func emptyAfterTranslation() {
        #expect(PuppetNick.make(template: "{nick}", nick: "") == "xmpp")
        #expect(!PuppetNick.make(template: "{nick}", nick: "🙂").isEmpty)
    }

    @Test("ident: x and eight hex digits, the same for every resource of a JID, different per JID and per secret")
    func ident() {
        let secret = Array("bridge-secret".utf8)
        let a = PuppetNick.ident(for: "alice@example.org/phone", secret: secret)
        #expect(a.count == 9 && a.first == "x" && a.dropFirst().allSatisfy(\.isHexDigit))
        #expect(a == PuppetNick.ident(for: "alice@example.org/laptop", secret: secret))
        #expect(a != PuppetNick.ident(for: "bob@example.org", secret: secret))
        #expect(a != PuppetNick.ident(for: "alice@example.org", secret: Array("another".utf8)))
    }
}
