// ByteSize: sizes on the command line — `0`, `512M`, `10G`, `1.5GiB`, `64MB` (every unit is
// binary: K = 1024), a plain number is bytes.

import ArgumentParser

struct ByteSize: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    var bytes: Int64

    init(bytes: Int64) { self.bytes = bytes }

    init?(argument: String) {
        let text = String(argument.filter { $0 != " " }).uppercased()
        let digits = text.prefix { $0.isNumber || $0 == "." }
        var unit = text.dropFirst(digits.count)
        if unit.hasSuffix("IB") { unit = unit.dropLast(2) } else if unit.hasSuffix("B") { unit = unit.dropLast() }
        let shifts: [Substring: Int64] = ["": 0, "K": 10, "M": 20, "G": 30, "T": 40]
        guard let number = Double(digits), number >= 0, let shift = shifts[unit] else { return nil }
        let value = number * Double(Int64(1) << shift)
        guard value < 9e18 else { return nil }
        bytes = Int64(value)
    }

    /// For people: "1.9 MiB", "512.0 KiB", "300 bytes".
    var approximate: String {
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] as [(String, Int64)]
        where bytes >= Int64(1) << shift {
            let tenths = Int64((Double(bytes) / Double(Int64(1) << shift) * 10).rounded())
            return "\(tenths / 10).\(tenths % 10) \(unit)"
        }
        return "\(bytes) bytes"
    }

    var description: String {
        for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] as [(String, Int64)]
        where bytes >= Int64(1) << shift && bytes % (Int64(1) << shift) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return "\(bytes)"
    }
}
