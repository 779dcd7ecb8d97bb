import TextPrep

/// Turns a room nick into an IRC nick (PROTOCOL.md §5): transliterated to ASCII (`Jürgen` ->
/// `Jurgen`, `Дмитрий` -> `Dmitrij`, since IRC networks take ASCII nicks), characters IRC
/// forbids become `_`, it cannot start with a digit or `-`, and it is cut to the network's
/// NICKLEN.
enum PuppetNick {
    static func make(template: String, nick: String, maximumLength: Int = 9) -> String {
        let specials = Set("[]\\`_^{|}-")
        var out = ""
        for c in template.replacing("{nick}", with: Transliteration.ascii(nick)) {
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
