import Configuration
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

    /// The puppet's user name (USER, and identd's answer): `x` and eight hex digits of a hash
    /// of the occupant's real JID, stable across restarts, so a network can ban one XMPP user
    /// (`*!x1a2b3c4d@*`) without the bridge showing who is behind a semi-anonymous nick.
    static func ident(for key: String) -> String {
        "x" + hash(key)
    }

    /// The puppet's host name under WEBIRC: the same hash under the bridge's domain.
    static func host(for key: String, domain: String) -> String {
        hash(key) + "." + domain
    }

    private static func hash(_ key: String) -> String {
        let value = UInt32(truncatingIfNeeded: BindAddress.fnv1a(key) >> 32) ^ UInt32(truncatingIfNeeded: BindAddress.fnv1a(key))
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }
}
