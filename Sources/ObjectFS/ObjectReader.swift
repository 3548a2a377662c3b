import ObjectStorage

/// One version of an object, as a reader needs it.
public struct ObjectVersion: Sendable, Hashable {
    public var key: ObjectKey
    public var etag: ETag?
    public var size: Int64
}

/// Reads bytes of a stored object for one open handle. The block cache and prefetcher of a
/// later issue plug in here; `RangedReader` is the direct form: one ranged GET per read.
protocol ObjectReader: Sendable {
    func read(_ object: ObjectVersion, range: ByteRange) async throws -> [UInt8]
}

struct RangedReader: ObjectReader {
    let storage: any ObjectStorage
    func read(_ object: ObjectVersion, range: ByteRange) async throws -> [UInt8] {
        let end = min(range.end, object.size)
        guard end > range.offset else { return [] }
        return try await storage.get(
            object.key, range: ByteRange(offset: range.offset, length: end - range.offset),
            ifMatch: object.etag)
    }
}
