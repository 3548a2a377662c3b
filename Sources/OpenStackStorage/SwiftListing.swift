// Parsing what a Swift server returns: JSON listings, object headers, times. Pure functions,
// tested with recorded replies.

import Foundation
import ObjectStorage
import StorageHTTP

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
    static func parse(_ body: [UInt8], container: String) throws(StorageError) -> (
        objects: [ObjectInfo], prefixes: [String], last: String?
    ) {
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
                        lastModified: e.last_modified.flatMap(HTTPDate.parseISO8601) ?? .zero,
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
            let t = HTTPDate.parseISO8601(hubic.hasSuffix("Z") ? String(hubic.dropLast()) : hubic)
        {
            meta["mtime"] = t.metadataValue
        }
        return meta
    }

    static func objectInfo(key: ObjectKey, _ r: HTTPResponse) -> ObjectInfo {
        let size = r.header("Content-Length").flatMap { Int64($0) } ?? 0
        let etag = r.header("ETag").map { ETag(String($0.trimmingWhitespace().filter { $0 != "\"" })) }
        let modified = r.header("X-Timestamp").flatMap(Timestamp.init(metadataValue:)) ?? .zero
        return ObjectInfo(
            key: key, size: size, etag: etag, lastModified: modified, contentType: r.header("Content-Type"),
            metadata: metadata(r.headers))
    }
}
