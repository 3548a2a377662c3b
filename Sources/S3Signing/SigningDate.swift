// Date formats the signers sign, computed from seconds since the epoch (no locale, no calendar
// object, no clock).

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// A UTC instant broken into its civil fields.
struct CivilTime {
    var year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, weekday: Int  // 0 = Sunday

    init(_ date: Date) {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        var days = seconds / 86_400
        var rest = seconds % 86_400
        if rest < 0 {
            rest += 86_400
            days -= 1
        }
        hour = rest / 3600
        minute = rest % 3600 / 60
        second = rest % 60
        weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday (4)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = doy - (153 * mp + 2) / 5 + 1
        month = mp < 10 ? mp + 3 : mp - 9
        year = yoe + era * 400 + (month <= 2 ? 1 : 0)
    }
}

private func pad(_ value: Int, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// The date strings the signers use.
public enum SigningDate {
    /// `20150830T123600Z` (SigV4 `x-amz-date`).
    public static func amzDate(_ date: Date) -> String {
        let t = CivilTime(date)
        return pad(t.year, 4) + pad(t.month, 2) + pad(t.day, 2) + "T" + pad(t.hour, 2) + pad(t.minute, 2)
            + pad(t.second, 2) + "Z"
    }

    /// `20150830` (SigV4 credential scope).
    public static func shortDate(_ date: Date) -> String {
        String(amzDate(date).prefix(8))
    }

    /// `Tue, 01 Jul 2025 12:00:00 GMT` (RFC 1123, the `Date` header of V2 schemes).
    public static func rfc1123(_ date: Date) -> String {
        let t = CivilTime(date)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return "\(days[t.weekday]), \(pad(t.day, 2)) \(months[t.month - 1]) \(pad(t.year, 4)) "
            + "\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)) GMT"
    }
}
