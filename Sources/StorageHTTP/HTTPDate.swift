// Dates in HTTP replies: ISO 8601 in listings (Swift's JSON, S3's XML) and RFC 1123 in headers
// (`Last-Modified`). Parsed by hand: the core has no Foundation, and these are two fixed formats.

import ObjectStorage

public enum HTTPDate {
    /// `2014-01-15T16:41:49.390270` (UTC, no zone, as Swift listings write it); also accepts a
    /// trailing `Z` or offset (RFC 3339, as Hubic's mtime metadata).
    public static func parseISO8601(_ s: String) -> Timestamp? {
        let u = Array(s.utf8)
        func num(_ a: Int, _ n: Int) -> Int? {
            guard a + n <= u.count else { return nil }
            var v = 0
            for b in u[a..<(a + n)] {
                guard b >= 48 && b <= 57 else { return nil }
                v = v * 10 + Int(b - 48)
            }
            return v
        }
        guard u.count >= 19, let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2),
            let mi = num(14, 2), let se = num(17, 2)
        else { return nil }
        var i = 19
        var nanos = 0
        if i < u.count && u[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < u.count, u[i] >= 48 && u[i] <= 57 {
                if digits < 9 {
                    nanos = nanos * 10 + Int(u[i] - 48)
                    digits += 1
                }
                i += 1
            }
            for _ in digits..<9 { nanos *= 10 }
        }
        var offset = 0
        if i < u.count && (u[i] == UInt8(ascii: "+") || u[i] == UInt8(ascii: "-")) {
            let sign = u[i] == UInt8(ascii: "+") ? 1 : -1
            guard let oh = num(i + 1, 2) else { return nil }
            let om = num(i + 4, 2) ?? num(i + 3, 2) ?? 0
            offset = sign * (oh * 3600 + om * 60)
        }
        let days = daysFromCivil(y, mo, d)
        let secs = Int64(days) * 86400 + Int64(h * 3600 + mi * 60 + se) - Int64(offset)
        return Timestamp(seconds: secs, nanoseconds: Int32(nanos))
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    public static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// `Wed, 12 Oct 2009 17:50:00 GMT` (RFC 1123, the `Last-Modified` and `Date` form).
    public static func parseRFC1123(_ s: String) -> Timestamp? {
        let parts = s.split(separator: " ")
        guard parts.count == 6, let d = Int(parts[1]), let y = Int(parts[3]),
            let m = months.firstIndex(of: String(parts[2]))
        else { return nil }
        let hms = parts[4].split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3 else { return nil }
        let days = daysFromCivil(y, m + 1, d)
        return Timestamp(seconds: Int64(days) * 86400 + Int64(hms[0] * 3600 + hms[1] * 60 + hms[2]))
    }

    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
}
