import Foundation

/// Where IRC connections to a network come from (`network.bind_address`): one local address,
/// or a prefix from which every puppet gets its own stable address, so a network can ban one
/// XMPP user's connection without banning the bridge (and a per-address connection limit
/// counts each puppet alone).
public struct BindAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address bytes (4 or 16) with the host bits zero when it is a prefix.
    let bytes: [UInt8]
    /// Prefix length in bits; the full length for a single address.
    let prefixLength: Int

    public var description: String { Self.format(bytes) + (prefixLength == bytes.count * 8 ? "" : "/\(prefixLength)") }

    /// `192.0.2.7`, `2001:db8::7`, `127.77.0.0/16`, `2001:db8:5::/64`. A prefix must leave at
    /// least 8 bits for hosts.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let bytes = Self.parse(String(parts[0])) else { return nil }
        let bits = bytes.count * 8
        var length = bits
        if parts.count == 2 {
            guard let given = Int(parts[1]), given >= 1, given <= bits - 8 else { return nil }
            length = given
        }
        self.bytes = Self.masked(bytes, keeping: length)
        self.prefixLength = length
    }

    public var isPrefix: Bool { prefixLength < bytes.count * 8 }

    /// The bridge's own connection: the address itself, or the prefix's first host.
    public var bridgeAddress: String {
        isPrefix ? Self.format(Self.withHost(bytes, prefixLength: prefixLength, host: 1)) : Self.format(bytes)
    }

    /// A puppet's address: the address itself, or a host in the prefix chosen by a stable hash
    /// of `key` (the occupant's real JID), never the first host (the bridge's), the all-zero or
    /// the all-one host.
    public func puppetAddress(for key: String) -> String {
        guard isPrefix else { return Self.format(bytes) }
        let hostBits = min(bytes.count * 8 - prefixLength, 64)
        let range = (hostBits == 64 ? UInt64.max : (UInt64(1) << hostBits) - 1) - 3  // 2 ... all-ones - 1
        return Self.format(Self.withHost(bytes, prefixLength: prefixLength, host: 2 + Self.fnv1a(key) % (range + 1)))
    }

    /// FNV-1a, 64 bits: the same address for the same user on every run (Swift's `Hasher` is
    /// seeded per process).
    public static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    static func masked(_ bytes: [UInt8], keeping bits: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let kept = max(0, min(8, bits - index * 8))
            return kept == 8 ? byte : byte & ~(UInt8(0xFF) >> kept)
        }
    }

    /// The prefix with `host` in its low bits.
    static func withHost(_ prefix: [UInt8], prefixLength: Int, host: UInt64) -> [UInt8] {
        var out = prefix
        var value = host
        var index = out.count - 1
        var bitsLeft = out.count * 8 - prefixLength
        while bitsLeft > 0 && index >= 0 {
            let take = min(8, bitsLeft)
            let mask = UInt8(truncatingIfNeeded: (1 << take) - 1)
            out[index] = (out[index] & ~mask) | (UInt8(truncatingIfNeeded: value) & mask)
            value >>= 8
            bitsLeft -= take
            index -= 1
        }
        return out
    }

    static func parse(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    static func format(_ bytes: [UInt8]) -> String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
