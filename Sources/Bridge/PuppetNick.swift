/// Turns a room nick into an IRC nick (PROTOCOL.md §5): characters IRC forbids become `_`,
/// it cannot start with a digit or `-`, and it is cut to the network's NICKLEN.
///
/// The walking skeleton keeps ASCII letters, digits and the RFC 2812 specials; ICU
/// transliteration (`Jürgen` -> `Jurgen`) comes with the bridge-semantics issue.
enum PuppetNick {
    static func make(template: String, nick: String, maximumLength: Int = 9) -> String {
        let specials = Set("[]\\`_^{|}-")
        var out = ""
        for c in template.replacing("{nick}", with: nick) {
            if c.isASCII && (c.isLetter || c.isNumber || specials.contains(c)) {
                out.append(c)
            } else {
                out.append("_")
            }
        }
        if let first = out.first, first.isNumber || first == "-" { out = "_" + out }
        if out.isEmpty { out = "xmpp" }
        return String(out.prefix(maximumLength))
    }
}
