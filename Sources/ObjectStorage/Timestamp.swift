#if canImport(Glibc)
    import Glibc
#endif

/// A point in time as seconds and nanoseconds since the Unix epoch.
///
/// Object metadata stores mtimes as decimal strings (`1700000000.123456789`, as
/// python-swiftclient, rclone and s3fs read them); `init?(metadataValue:)` parses them exactly,
/// without going through a `Double`, so a time written and read back compares equal.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var seconds: Int64
    /// 0 ..< 1_000_000_000
    public var nanoseconds: Int32

    public init(seconds: Int64, nanoseconds: Int32 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static let zero = Timestamp(seconds: 0)

    /// The current wall-clock time.
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: Int32(ts.tv_nsec))
    }

    public static func < (a: Timestamp, b: Timestamp) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    /// Parses `123`, `123.5`, `123.000000001`, `-1.5`; extra fraction digits are truncated.
    public init?(metadataValue text: String) {
        var s = Substring(text.trimmingWhitespace())
        var negative = false
        if s.first == "-" {
            negative = true
            s = s.dropFirst()
        }
        let parts = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit),
            let sec = Int64(whole)
        else { return nil }
        var nanos: Int64 = 0
        if parts.count == 2 {
            let frac = parts[1]
            guard frac.allSatisfy(\.isASCIIDigit) else { return nil }
            let digits = String(frac.prefix(9)).padding(toLength: 9)
            nanos = Int64(digits) ?? 0
        }
        if negative && nanos > 0 {
            self.init(seconds: -sec - 1, nanoseconds: Int32(1_000_000_000 - nanos))
        } else {
            self.init(seconds: negative ? -sec : sec, nanoseconds: Int32(nanos))
        }
    }

    /// `YYYYMMDD-HHMMSS` in UTC (`20261204-093500`), for names that sort by time.
    public var compactUTC: String {
        var stamp = time_t(seconds)
        var t = tm()
        gmtime_r(&stamp, &t)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return
            "\(t.tm_year + 1900)\(two(t.tm_mon + 1))\(two(t.tm_mday))-\(two(t.tm_hour))\(two(t.tm_min))\(two(t.tm_sec))"
    }

    /// `seconds.nnnnnnnnn` with trailing zeros removed (`1700000000.5`, or `1700000000` whole).
    public var metadataValue: String {
        guard nanoseconds != 0 else { return String(seconds) }
        var frac = String(nanoseconds)
        frac = String(repeating: "0", count: 9 - frac.count) + frac
        while frac.hasSuffix("0") { frac.removeLast() }
        if seconds < 0 {
            // -1.5 is stored as seconds -2, nanoseconds 500_000_000.
            let n = 1_000_000_000 - Int64(nanoseconds)
            var f = String(n)
            f = String(repeating: "0", count: 9 - f.count) + f
            while f.hasSuffix("0") { f.removeLast() }
            return "-\(-(seconds + 1)).\(f)"
        }
        return "\(seconds).\(frac)"
    }

    public var description: String { metadataValue }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs, CRs and LFs (header values, config lines).
    public func trimmingWhitespace() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        var s = Substring(self)
        while let f = s.first, blank(f) { s = s.dropFirst() }
        while let l = s.last, blank(l) { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func padding(toLength n: Int) -> String {
        count >= n ? self : self + String(repeating: "0", count: n - count)
    }
}
