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

/// Read-ahead for sequential reads: once two reads follow each other, the next `chunks` chunks
/// of `chunkSize` bytes are fetched in parallel (one ranged GET each, pinned to the version's
/// ETag) and reads are answered from them; a read elsewhere drops them and is a plain ranged
/// GET again. Memory per handle is at most `chunks × chunkSize`. The kernel sends read-ahead
/// requests concurrently and sometimes out of order, so "sequential" means "inside or right
/// after the window", not "exactly after the last read".
actor PrefetchingReader: ObjectReader {
    let storage: any ObjectStorage
    let chunkSize: Int64
    let chunks: Int64
    private var window: [Int64: Task<[UInt8], any Error>] = [:]
    /// Where the previous read ended (-1: no read yet).
    private var lastEnd: Int64 = -1
    /// Where the current run of contiguous reads began.
    private var runStart: Int64 = 0
    /// Reads that start this close to where the previous one ended continue its run: the
    /// kernel's concurrent read requests (up to 1 MiB each) arrive slightly out of order.
    static let slack: Int64 = 1 << 20
    /// A run must cover this much before chunks are fetched ahead: a random read, with the
    /// kernel's own read-ahead around it, stays below it.
    var trigger: Int64 { min(4 << 20, chunkSize * 2) }

    init(storage: any ObjectStorage, chunkSize: Int64, chunks: Int) {
        self.storage = storage
        self.chunkSize = max(1, chunkSize)
        self.chunks = Int64(max(1, chunks))
    }

    deinit {
        for task in window.values { task.cancel() }
    }

    func read(_ object: ObjectVersion, range: ByteRange) async throws -> [UInt8] {
        let end = min(range.end, object.size)
        guard end > range.offset else { return [] }
        let first = range.offset / chunkSize
        let continues = lastEnd >= 0 && range.offset >= lastEnd - Self.slack && range.offset <= lastEnd + Self.slack
        if !continues && window[first] == nil { runStart = range.offset }
        lastEnd = max(end, continues ? lastEnd : end)
        guard window[first] != nil || (continues && lastEnd - runStart >= trigger) else {
            if !continues { dropWindow() }
            return try await RangedReader(storage: storage).read(object, range: range)
        }
        // Keep the chunks from the one being read to `chunks` ahead; drop those behind.
        for index in Array(window.keys) where index < first - 1 {
            window.removeValue(forKey: index)?.cancel()
        }
        var index = first
        while index < first + chunks && index * chunkSize < object.size {
            if window[index] == nil { window[index] = fetch(object, chunk: index) }
            index += 1
        }
        var out: [UInt8] = []
        out.reserveCapacity(Int(end - range.offset))
        var position = range.offset
        while position < end {
            let i = position / chunkSize
            let task = window[i] ?? fetch(object, chunk: i)
            if window[i] == nil { window[i] = task }
            let bytes: [UInt8]
            do {
                bytes = try await task.value
            } catch {
                // Fetched again by the next read (a changed object stays ESTALE).
                if window[i] == task { window[i] = nil }
                throw error
            }
            let from = Int(position - i * chunkSize)
            let to = min(bytes.count, Int(end - i * chunkSize))
            guard to > from else { break }  // the object is shorter than its size said
            out += bytes[from..<to]
            position = i * chunkSize + Int64(to)
        }
        return out
    }

    private func fetch(_ object: ObjectVersion, chunk index: Int64) -> Task<[UInt8], any Error> {
        let storage = self.storage
        let range = ByteRange(offset: index * chunkSize, length: min(chunkSize, object.size - index * chunkSize))
        return Task { try await RangedReader(storage: storage).read(object, range: range) }
    }

    private func dropWindow() {
        for task in window.values { task.cancel() }
        window.removeAll()
    }
}
