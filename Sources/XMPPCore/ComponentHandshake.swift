import CCrypto

/// The XEP-0114 §3 handshake: lowercase hex SHA-1 of the stream id followed by the secret.
public enum ComponentHandshake {
    public static func digest(streamID: String, secret: String) -> String {
        let input = Array((streamID + secret).utf8)
        var digest = [UInt8](repeating: 0, count: 20)
        let ok = input.withUnsafeBufferPointer { shadowbridge_sha1($0.baseAddress, $0.count, &digest) }
        precondition(ok == 1, "libcrypto SHA-1 failed")
        return Hex.encode(digest)
    }

    /// The stream header a component sends (XEP-0114 §3).
    public static func streamHeader(to domain: String) -> String {
        "<?xml version='1.0'?><stream:stream xmlns='\(NS.component)' xmlns:stream='\(NS.stream)' to='\(domain)'>"
    }
}

public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Random identifiers for stanza ids and opaque user ids.
public enum RandomID {
    public static func make(bytes count: Int = 8) -> String {
        var buffer = [UInt8](repeating: 0, count: count)
        let ok = buffer.withUnsafeMutableBufferPointer { shadowbridge_random_bytes($0.baseAddress, $0.count) }
        precondition(ok == 1, "libcrypto RAND_bytes failed")
        return Hex.encode(buffer)
    }
}

/// HMAC-SHA256 through libcrypto (XEP-0421 occupant ids).
public enum HMAC {
    public static func sha256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: 32)
        let ok = key.withUnsafeBufferPointer { k in
            data.withUnsafeBufferPointer { d in shadowbridge_hmac_sha256(k.baseAddress, k.count, d.baseAddress, d.count, &mac) }
        }
        precondition(ok == 1, "libcrypto HMAC failed")
        return mac
    }
}

extension RandomID {
    /// Raw random bytes (room secrets).
    public static func bytes(_ count: Int) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let ok = buffer.withUnsafeMutableBufferPointer { shadowbridge_random_bytes($0.baseAddress, $0.count) }
        precondition(ok == 1, "libcrypto RAND_bytes failed")
        return buffer
    }
}
