// Percent-encoding as the signers need it (see the essay in S3Signing.swift).

/// RFC 3986 percent-encoding, as SigV4 (S3) and KS3 use it.
public enum URIEncoding {
    /// `A-Z a-z 0-9 - . _ ~`: never encoded by any of the schemes.
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static let hexDigits = Array("0123456789ABCDEF".utf8)

    /// Encodes every UTF-8 byte outside the unreserved set as `%XX` (upper-case hex); `/` is kept
    /// when `keepSlash`. Space is `%20`. This is SigV4's `UriEncode` and Python's
    /// `quote(s, safe='/')` (or `safe=''`).
    public static func encode(_ string: String, keepSlash: Bool = false) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            if isUnreserved(byte) || (keepSlash && byte == UInt8(ascii: "/")) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The S3 path of an object key: each segment encoded once, `/` kept. Prefix `/bucket` for
    /// path-style addressing: `"/" + bucket + path(key)` with `key` starting without `/`.
    public static func path(_ key: String) -> String {
        "/" + encode(key, keepSlash: true)
    }

    /// Decodes `%XX` sequences (not `+`). `nil` if a `%` is not followed by two hex digits or the
    /// bytes are not UTF-8.
    public static func decode(_ string: String) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(string.utf8.count)
        var bytes = string.utf8.makeIterator()
        while let byte = bytes.next() {
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                continue
            }
            guard let high = bytes.next().flatMap(hexValue), let low = bytes.next().flatMap(hexValue) else {
                return nil
            }
            out.append(high << 4 | low)
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// SigV4's canonical URI for S3: the path as sent, decoded and re-encoded once per segment
    /// (`/` kept, no dot-segment normalisation). A segment that does not decode is kept as is.
    /// The empty path is `/`.
    public static func canonicalS3Path(_ path: String) -> String {
        if path.isEmpty { return "/" }
        // A path of unreserved characters and slashes is its own canonical form.
        if path.utf8.allSatisfy({ isUnreserved($0) || $0 == UInt8(ascii: "/") }) { return path }
        return path.split(separator: "/", omittingEmptySubsequences: false)
            .map { segment in decode(String(segment)).map { encode($0) } ?? String(segment) }
            .joined(separator: "/")
    }

    /// The wire query string of decoded items, in their order: `name=value` with both RFC 3986
    /// encoded (space `%20`), or a bare `name` for a `nil` value; joined with `&`, no leading `?`.
    public static func query(_ items: [QueryItem]) -> String {
        items.map { item in
            let name = encode(item.name)
            guard let value = item.value else { return name }
            return name + "=" + encode(value)
        }.joined(separator: "&")
    }
}
