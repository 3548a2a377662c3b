// Parsing what a Swift server returns: JSON listings, object headers, times. Pure functions,
// tested with recorded replies.

import Foundation
import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

enum SwiftListing {
    struct Entry: Decodable {
        var name: String?
        var subdir: String?
        var bytes: Int64?
        var hash: String?
        var last_modified: String?
        var content_type: String?
    }

    struct Container: Decodable {
        var name: String
        var count: Int64?
        var bytes: Int64?
    }

    /// A container listing page: objects and `subdir` roll-ups, and the last name (the next
    /// `marker`).
    static func parse(_ body: [UInt8], container: String) throws(StorageError) -> (objects: [ObjectInfo], prefixes: [String], last: String?) {
        let entries: [Entry]
        do {
            entries = try JSONDecoder().decode([Entry].self, from: Data(body))
        } catch {
            throw .malformedReply("listing of \(container) is not the expected JSON")
        }
        var objects: [ObjectInfo] = []
        var prefixes: [String] = []
        var last: String? = nil
        for e in entries {
            if let sub = e.subdir {
                prefixes.append(sub)
                last = sub
            } else if let name = e.name {
                objects.append(
                    ObjectInfo(
                        key: name, size: e.bytes ?? 0, etag: e.hash.map(ETag.init),
                        lastModified: e.last_modified.flatMap(parseListingTime) ?? .zero,
                        contentType: e.content_type, metadata: nil))
                last = name
            } else {
                throw .malformedReply("listing of \(container) has an entry without name or subdir")
            }
        }
        return (objects, prefixes, last)
    }

    static func parseContainers(_ body: [UInt8]) throws(StorageError) -> [Container] {
        do {
            return try JSONDecoder().decode([Container].self, from: Data(body))
        } catch {
            throw .malformedReply("account listing is not the expected JSON")
        }
    }

    /// `2014-01-15T16:41:49.390270` (UTC, no zone, as Swift listings write it); also accepts a
    /// trailing `Z` or offset (RFC 3339, as Hubic's mtime metadata).
    static func parseListingTime(_ s: String) -> Timestamp? {
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
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// User metadata from `X-Object-Meta-*` headers, lower-cased names without the prefix.
    /// Hubic's `Hubiclocallastmodified` (RFC 3339) becomes `mtime` when there is no `mtime`.
    static func metadata(_ headers: [(String, String)]) -> [String: String] {
        var meta: [String: String] = [:]
        let prefix = "x-object-meta-"
        for (k, v) in headers {
            let lk = k.lowercased()
            if lk.hasPrefix(prefix) { meta[String(lk.dropFirst(prefix.count))] = v }
        }
        if meta["mtime"] == nil, let hubic = meta["hubiclocallastmodified"],
            let t = parseListingTime(hubic.hasSuffix("Z") ? String(hubic.dropLast()) : hubic)
        {
            meta["mtime"] = t.metadataValue
        }
        return meta
    }

    static func objectInfo(key: ObjectKey, _ r: HTTPResponse) -> ObjectInfo {
        let size = r.header("Content-Length").flatMap { Int64($0) } ?? 0
        let etag = r.header("ETag").map { ETag(String($0.trimmingCharacters().filter { $0 != "\"" })) }
        let modified = r.header("X-Timestamp").flatMap(Timestamp.init(metadataValue:)) ?? .zero
        return ObjectInfo(
            key: key, size: size, etag: etag, lastModified: modified, contentType: r.header("Content-Type"),
            metadata: metadata(r.headers))
    }
}
