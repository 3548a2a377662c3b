// UserMetadata: `user.*` extended attributes <-> object user metadata (doc/SEMANTICS.md,
// "Extended attributes"). Pure functions, so the encoding is unit-tested both ways.
//
// Metadata names are case-insensitive on every server (S3 lower-cases them, Swift title-cases
// them) and Swift's WSGI layer cannot tell `_` from `-`, so only names made of lower-case
// letters, digits, `.` and `-` are stored as they are: `user.color` is `x-amz-meta-color` /
// `X-Object-Meta-Color`. Any other name, and names that would collide with the POSIX metadata
// objmount keeps (`mtime`, `mode`, ...), is stored as `xattr-` + base32 (RFC 4648, lower case,
// no padding) of its UTF-8 bytes. Values that are printable ASCII without leading or trailing
// blanks are stored as they are; any other value (binary, UTF-8, empty) as `base64:` + base64.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

public enum UserMetadata {
    /// Metadata names that are not extended attributes: POSIX metadata of objmount, s3fs and
    /// rclone, and Hubic's client's mtime.
    public static let reservedNames: Set<String> = [
        "mtime", "mode", "uid", "gid", "atime", "ctime", "xattr", "hubiclocallastmodified",
    ]
    static let encodedNamePrefix = "xattr-"
    static let encodedValuePrefix = "base64:"

    /// The metadata name that stores the attribute `user.<name>`.
    public static func metadataName(for name: String) -> String {
        let plain =
            !name.isEmpty && !reservedNames.contains(name) && !name.hasPrefix(encodedNamePrefix)
            && name.utf8.first.map(isAlphanumeric) == true
            && name.utf8.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
        return plain ? name : encodedNamePrefix + Base32.encode(Array(name.utf8))
    }

    /// The attribute name (without `user.`) a metadata name stores, or nil if it stores none.
    public static func attributeName(for metadataName: String) -> String? {
        if reservedNames.contains(metadataName) { return nil }
        if metadataName.hasPrefix(encodedNamePrefix) {
            guard let bytes = Base32.decode(String(metadataName.dropFirst(encodedNamePrefix.count))),
                let name = String(validating: bytes, as: UTF8.self), !name.isEmpty
            else { return nil }
            return name
        }
        return metadataName
    }

    public static func encodeValue(_ value: [UInt8]) -> String {
        let printable = value.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
        if printable, let first = value.first, let last = value.last, first != 0x20, last != 0x20 {
            let text = String(decoding: value, as: UTF8.self)
            if !text.hasPrefix(encodedValuePrefix) { return text }
        }
        return encodedValuePrefix + Base64.encode(value)
    }

    public static func decodeValue(_ stored: String) -> [UInt8] {
        if stored.hasPrefix(encodedValuePrefix),
            let bytes = Base64.decode(String(stored.dropFirst(encodedValuePrefix.count)))
        {
            return bytes
        }
        return Array(stored.utf8)
    }

    /// The attributes (names without `user.`) that `metadata` stores, in byte order.
    public static func attributeNames(in metadata: [String: String]) -> [String] {
        metadata.keys.compactMap(attributeName(for:)).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Whether `metadata` (names without protocol prefix) fits the server's limits; the errno
    /// to return if not: E2BIG for a name or value too long, ENOSPC for too many or too much.
    public static func check(_ metadata: [String: String], against limits: UserMetadataLimits) -> Int32? {
        var total = 0
        for (name, value) in metadata {
            if let max = limits.maximumNameBytes, name.utf8.count > max { return E2BIG }
            if let max = limits.maximumValueBytes, value.utf8.count > max { return E2BIG }
            total += name.utf8.count + value.utf8.count
        }
        if let max = limits.maximumCount, metadata.count > max { return ENOSPC }
        return total > limits.maximumTotalBytes ? ENOSPC : nil
    }

    private static func isAlphanumeric(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }
}

/// RFC 4648 base32 in lower case without padding: what survives a case-folding header name.
enum Base32 {
    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyz234567".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for b in bytes {
            buffer = (buffer << 8) | UInt32(b)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var buffer: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            guard let v = alphabet.firstIndex(of: c) else { return nil }
            buffer = (buffer << 5) | UInt32(v)
            bits += 5
            if bits >= 8 {
                out.append(UInt8((buffer >> UInt32(bits - 8)) & 0xff))
                bits -= 8
            }
        }
        // Leftover bits must be the zero padding of the last character.
        guard bits < 5, buffer & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }
}

/// RFC 4648 base64 with padding.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            var v = UInt32(bytes[i]) << 16
            if n > 1 { v |= UInt32(bytes[i + 1]) << 8 }
            if n > 2 { v |= UInt32(bytes[i + 2]) }
            for j in 0..<4 {
                out.append(j <= n ? alphabet[Int((v >> UInt32(18 - 6 * j)) & 63)] : UInt8(ascii: "="))
            }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            var v: UInt32 = 0
            var padding = 0
            for j in 0..<4 {
                let c = chars[i + j]
                if c == UInt8(ascii: "=") {
                    guard i + 4 == chars.count, j >= 2 else { return nil }
                    padding += 1
                    v <<= 6
                } else {
                    guard padding == 0, let d = alphabet.firstIndex(of: c) else { return nil }
                    v = (v << 6) | UInt32(d)
                }
            }
            out.append(UInt8((v >> 16) & 0xff))
            if padding < 2 { out.append(UInt8((v >> 8) & 0xff)) }
            if padding < 1 { out.append(UInt8(v & 0xff)) }
            i += 4
        }
        return out
    }
}
