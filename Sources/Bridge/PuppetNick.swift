import CCrypto
import TextPrep
import XMPPCore

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

    /// The puppet's user name (USER, and identd's answer): `x` and eight hex digits of an
    /// HMAC of the occupant's bare JID keyed by the bridge's secret: the same for every
    /// session and restart, so a network can ban one XMPP user (`*!x1a2b3c4d@*`), and nobody
    /// without the secret can test a guessed address against it in a semi-anonymous room.
    static func ident(for key: String, secret: [UInt8]) -> String {
        "x" + hash(key, secret: secret)
    }

    /// The puppet's host name under WEBIRC: the same hash under the bridge's domain.
    static func host(for key: String, secret: [UInt8], domain: String) -> String {
        hash(key, secret: secret) + "." + domain
    }

    private static func hash(_ key: String, secret: [UInt8]) -> String {
        let bare = Array((JID(key)?.bare.description ?? key).utf8)
        var mac = [UInt8](repeating: 0, count: 32)
        secret.withUnsafeBufferPointer { k in
            bare.withUnsafeBufferPointer { d in _ = shadowbridge_hmac_sha256(k.baseAddress, k.count, d.baseAddress, d.count, &mac) }
        }
        let digits = Array("0123456789abcdef")
        return String(mac.prefix(4).flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] })
    }
}
