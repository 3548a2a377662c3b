// ByteString: a String that compares, hashes and sorts by its UTF-8 bytes, as object stores
// compare keys.
//
// Swift's `String` equality, hashing and `<` follow Unicode canonical equivalence:
// `"caf\u{E9}"` (é precomposed, NFC) `==` `"cafe\u{301}"` (e + combining acute, NFD). Every
// server (S3, KS3, OpenStack Swift) stores those as two objects and sorts keys by their bytes, so
// a `[String: X]`, a `Set<String>`, `==` or `<` on keys merges or misorders what the server keeps
// apart. Key such collections by `ByteString` (`key.byteString`, or `dict[bytes: key]`), and
// compare single keys with `hasSameBytes(as:)` / `precedesInByteOrder(_:)`.
//
// `String`'s own character-based operations have the same trap: `hasPrefix`, `firstIndex(of:)`,
// `split(separator:)`, `dropLast()` work on grapheme clusters (`"cafe\u{301}".hasPrefix("cafe")`
// is false, and a "/" directly followed by a combining mark is not found as "/"). On keys, use the
// `utf8` view instead (`key.utf8.starts(with:)`, `key.utf8.firstIndex(of: UInt8(ascii: "/"))`).

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A string whose equality, hash and order are those of its UTF-8 bytes, not of its characters.
///
/// It holds the `String` itself (no copy of the bytes is made: a native Swift string is stored
/// as UTF-8) and compares with `memcmp`, so it is as cheap to build and store as the string.
/// Two spellings of one text in different Unicode normalization forms are different
/// `ByteString`s; the order is the byte order S3 and Swift list keys in (`"Z" < "a" < "é"`).
public struct ByteString: Hashable, Comparable, Sendable {
    /// The string, exactly as given.
    public let string: String

    public init(_ string: String) {
        var s = string
        // A no-op for native strings; makes a bridged one contiguous so comparisons never copy.
        s.makeContiguousUTF8()
        self.string = s
    }

    public init(_ substring: Substring) {
        self.init(String(substring))
    }

    /// The UTF-8 bytes.
    public var utf8: String.UTF8View { string.utf8 }

    /// The number of UTF-8 bytes.
    public var byteCount: Int { string.utf8.count }

    /// Calls `body` with the UTF-8 bytes, without copying them when the string is contiguous
    /// (always, once stored in a `ByteString`, except for exotic bridged strings).
    @inlinable
    public func withUTF8Bytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        if let r = try string.utf8.withContiguousStorageIfAvailable(body) { return r }
        return try Array(string.utf8).withUnsafeBufferPointer(body)
    }

    public static func == (lhs: ByteString, rhs: ByteString) -> Bool {
        let n = lhs.byteCount
        guard n == rhs.byteCount else { return false }
        if n == 0 { return true }
        return lhs.withUTF8Bytes { a in rhs.withUTF8Bytes { b in memcmp(a.baseAddress!, b.baseAddress!, n) == 0 } }
    }

    public func hash(into hasher: inout Hasher) {
        withUTF8Bytes { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        // A byte UTF-8 never contains ends the value, so that a ByteString hashed next to other
        // values cannot run into them.
        hasher.combine(0xFF as UInt8)
    }

    /// Byte order (unsigned, like `memcmp`): a proper prefix sorts first.
    public static func < (lhs: ByteString, rhs: ByteString) -> Bool {
        lhs.withUTF8Bytes { a in
            rhs.withUTF8Bytes { b in
                let n = min(a.count, b.count)
                if n > 0 {
                    let c = memcmp(a.baseAddress!, b.baseAddress!, n)
                    if c != 0 { return c < 0 }
                }
                return a.count < b.count
            }
        }
    }

    /// Whether the bytes start with those of `prefix` (`String.hasPrefix` compares characters:
    /// `"cafe\u{301}".hasPrefix("cafe")` is false, while a listing with prefix `cafe` has it).
    public func hasPrefix(_ prefix: ByteString) -> Bool {
        let n = prefix.byteCount
        guard n <= byteCount else { return false }
        if n == 0 { return true }
        return withUTF8Bytes { a in prefix.withUTF8Bytes { p in memcmp(a.baseAddress!, p.baseAddress!, n) == 0 } }
    }
}

extension ByteString: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self.init(value) }
}

extension ByteString: CustomStringConvertible, CustomDebugStringConvertible {
    public var description: String { string }

    /// The string with every non-ASCII scalar escaped (`"cafe\u{301}"`), so that test failures
    /// show which spelling is which.
    public var debugDescription: String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case " "..."~": out.unicodeScalars.append(scalar)
            default: out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out + "\""
    }
}

extension String {
    /// This string compared by its bytes, e.g. as a dictionary key: `objects[key.byteString]`.
    public var byteString: ByteString { ByteString(self) }

    /// Whether both strings have the same UTF-8 bytes (`==` answers whether they are canonically
    /// equivalent: `"caf\u{E9}" == "cafe\u{301}"`).
    public func hasSameBytes(as other: String) -> Bool { byteString == other.byteString }

    /// Whether this string sorts before `other` in UTF-8 byte order, the order of S3 and Swift
    /// listings (`<` on `String` compares characters).
    public func precedesInByteOrder(_ other: String) -> Bool { byteString < other.byteString }
}

extension Sequence where Element == String {
    /// The strings sorted by their UTF-8 bytes, as S3 and Swift list keys.
    public func sortedInByteOrder() -> [String] {
        map { ByteString($0) }.sorted().map(\.string)
    }
}

extension Dictionary where Key == ByteString {
    /// The value for the key with exactly the bytes of `key`.
    public subscript(bytes key: String) -> Value? {
        get { self[ByteString(key)] }
        set { self[ByteString(key)] = newValue }
    }
}
