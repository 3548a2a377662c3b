// MemoryStorage: a complete bucket held in memory, behind an actor.
//
// It is a real backend (the `memory://` remote, demos, the reference model of the property
// tests), not a mock: listings are sorted, paged and rolled up by delimiter exactly as S3 does
// it, multipart uploads are assembled from their parts, and ETags change with every write.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

public actor MemoryStorage: ObjectStorage {
    /// An object's bytes as the chunks they arrived in (a multipart upload keeps its parts
    /// instead of copying them into one array: on this kind of VM, touching fresh memory is
    /// what a large write costs most).
    struct Stored {
        var chunks: [[UInt8]]
        var info: ObjectInfo

        var bytes: [UInt8] { chunks.count == 1 ? chunks[0] : Array(chunks.joined()) }

        func read(_ start: Int, _ end: Int) -> [UInt8] {
            guard start < end else { return [] }
            if chunks.count == 1 { return Array(chunks[0][start..<end]) }
            var out: [UInt8] = []
            out.reserveCapacity(end - start)
            var base = 0
            for chunk in chunks {
                let lo = max(start, base)
                let hi = min(end, base + chunk.count)
                if lo < hi { out += chunk[(lo - base)..<(hi - base)] }
                base += chunk.count
                if base >= end { break }
            }
            return out
        }
    }

    public nonisolated let capabilities: StorageCapabilities
    /// Keyed by the keys' bytes, as a server stores them: `String` keys would merge spellings
    /// that are canonically equivalent (NFC `caf\u{E9}` and NFD `cafe\u{301}`).
    private var objects: [ByteString: Stored] = [:]
    /// All keys, sorted by their UTF-8 bytes (S3 order).
    private var sortedKeys: [ByteString] = []
    private var uploads:
        [ByteString: (key: ObjectKey, options: PutOptions, parts: [Int: (etag: ETag, bytes: [UInt8])])] = [:]
    private var version: UInt64 = 0
    private let clock: @Sendable () -> Timestamp
    private let pageSize: Int
    public let quotaBytes: Int64?

    /// - Parameters:
    ///   - pageSize: the most entries one listing page returns (S3: 1000, Swift: 10,000).
    ///   - now: the time stamped on writes (injected so tests control it).
    public init(
        markerStyle: DirectoryMarkerStyle = .trailingSlash, pageSize: Int = 1000,
        minimumPartSize: Int64 = 5 << 20, quotaBytes: Int64? = nil, copiesParts: Bool = true,
        now: @escaping @Sendable () -> Timestamp = MemoryStorage.systemTime
    ) {
        var capabilities = StorageCapabilities(directoryMarkerStyle: markerStyle, minimumPartSize: minimumPartSize)
        capabilities.copiesParts = copiesParts
        self.capabilities = capabilities
        self.pageSize = pageSize
        self.clock = now
        self.quotaBytes = quotaBytes
    }

    public static let systemTime: @Sendable () -> Timestamp = { Timestamp.now() }

    // MARK: - Inspection for tests and seeding

    /// Every key with its bytes, sorted.
    public func snapshot() -> [(key: ObjectKey, bytes: [UInt8])] {
        sortedKeys.map { ($0.string, objects[$0]!.bytes) }
    }

    public var objectCount: Int { objects.count }

    // MARK: - ObjectStorage

    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?)
        async throws -> ListPage
    {
        let limit = max(1, min(maxKeys ?? pageSize, pageSize))
        let prefix = ByteString(prefix)
        let after = continuation.map { ByteString($0) }
        var index = lowerBound(prefix)
        if let after {
            index = max(index, upperBound(after))
        }
        let delimiter = delimiter.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        var page = ListPage(objects: [], commonPrefixes: [], continuation: nil)
        var count = 0
        var last: String? = nil
        while index < sortedKeys.count {
            let key = sortedKeys[index]
            guard key.hasPrefix(prefix) else { break }
            let rest = Array(key.utf8.dropFirst(prefix.byteCount))
            if let d = delimiter, let end = Self.endOfFirst(d, in: rest) {
                let common = ByteString(prefix.string + String(decoding: rest[..<end], as: UTF8.self))
                // Skip every key under this common prefix.
                index = upperBoundOfPrefix(common)
                // The continuation was this common prefix (the last entry of the previous
                // page): it is not listed twice.
                if common == after { continue }
                if count == limit {
                    page.continuation = last
                    break
                }
                page.commonPrefixes.append(common.string)
                last = common.string
            } else {
                if count == limit {
                    page.continuation = last
                    break
                }
                page.objects.append(objects[key]!.info)
                last = key.string
                index += 1
            }
            count += 1
        }
        return page
    }

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        guard let o = objects[bytes: key] else { throw StorageError.notFound(key) }
        return o.info
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] {
        guard let o = objects[bytes: key] else { throw StorageError.notFound(key) }
        if let m = ifMatch, o.info.etag != m { throw StorageError.preconditionFailed(key) }
        let size = Int64(o.info.size)
        guard let r = range else { return o.bytes }
        return o.read(Int(min(r.offset, size)), Int(min(r.end, size)))
    }

    /// The payload is read before entering the actor, so that uploads in flight copy their
    /// bytes in parallel.
    public nonisolated func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws
        -> ObjectInfo
    {
        try await putBytes(key, try await payload.loadBytes(), options: options)
    }

    private func putBytes(_ key: ObjectKey, _ bytes: [UInt8], options: PutOptions) throws -> ObjectInfo {
        try validate(key)
        if options.ifAbsent && objects[bytes: key] != nil { throw StorageError.preconditionFailed(key) }
        try checkQuota(adding: Int64(bytes.count), replacing: key)
        return store(key, chunks: [bytes], options: options)
    }

    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing: PutOptions?)
        async throws -> ObjectInfo
    {
        try validate(destination)
        guard let o = objects[bytes: source] else { throw StorageError.notFound(source) }
        let options =
            replacing
            ?? PutOptions(contentType: o.info.contentType, metadata: o.info.metadata ?? [:])
        return store(destination, chunks: o.chunks, options: options)
    }

    public func delete(_ keys: [ObjectKey]) async throws {
        for key in keys.map({ ByteString($0) }) where objects.removeValue(forKey: key) != nil {
            sortedKeys.remove(at: lowerBound(key))
        }
    }

    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws
        -> MultipartUpload
    {
        try validate(key)
        version += 1
        let id = "upload-\(version)"
        uploads[bytes: id] = (key, options, [:])
        return MultipartUpload(key: key, uploadID: id)
    }

    public nonisolated func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws
        -> UploadedPart
    {
        try await storePart(upload, number: number, try await payload.loadBytes())
    }

    private func storePart(_ upload: MultipartUpload, number: Int, _ bytes: [UInt8]) throws -> UploadedPart {
        guard uploads[bytes: upload.uploadID] != nil else {
            throw StorageError.notFound("upload \(upload.uploadID)")
        }
        guard (1...capabilities.maximumPartCount).contains(number) else {
            throw StorageError.invalidArgument("part number \(number)")
        }
        version += 1
        partBytesReceived += Int64(bytes.count)
        let etag = ETag("part-\(version)")
        uploads[bytes: upload.uploadID]!.parts[number] = (etag, bytes)
        return UploadedPart(number: number, etag: etag)
    }

    public func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: ObjectKey, range: ByteRange, ifMatch: ETag?
    ) async throws -> UploadedPart {
        guard capabilities.copiesParts else { throw StorageError.invalidArgument("this server cannot copy parts") }
        guard let o = objects[bytes: source] else { throw StorageError.notFound(source) }
        if let m = ifMatch, o.info.etag != m { throw StorageError.preconditionFailed(source) }
        guard range.length > 0, range.length <= capabilities.maximumCopiedPartSize, range.end <= o.info.size else {
            throw StorageError.invalidArgument("copy range \(range.offset)+\(range.length) of \(source)")
        }
        return try storePart(upload, number: number, o.read(Int(range.offset), Int(range.end)))
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart])
        async throws -> ObjectInfo
    {
        guard let u = uploads[bytes: upload.uploadID] else {
            throw StorageError.notFound("upload \(upload.uploadID)")
        }
        guard !parts.isEmpty, parts.map(\.number) == parts.map(\.number).sorted() else {
            throw StorageError.invalidArgument("parts must be given in ascending order")
        }
        var chunks: [[UInt8]] = []
        for (i, part) in parts.enumerated() {
            guard let stored = u.parts[part.number], stored.etag == part.etag else {
                throw StorageError.invalidArgument("part \(part.number) was not uploaded")
            }
            let data = stored.bytes
            if i < parts.count - 1 && Int64(data.count) < capabilities.minimumPartSize {
                throw StorageError.invalidArgument("part \(part.number) is below the minimum size")
            }
            chunks.append(data)
        }
        try checkQuota(adding: chunks.reduce(0) { $0 + Int64($1.count) }, replacing: u.key)
        uploads[bytes: upload.uploadID] = nil
        return store(u.key, chunks: chunks, options: u.options)
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        uploads[bytes: upload.uploadID] = nil
    }

    /// Bytes received as parts (sent or copied), in all uploads so far.
    public private(set) var partBytesReceived: Int64 = 0

    /// Multipart uploads started and neither completed nor aborted.
    public var pendingUploads: [MultipartUpload] {
        uploads.map { MultipartUpload(key: $0.value.key, uploadID: $0.key.string) }
    }

    public func accountInfo() async throws -> AccountInfo {
        AccountInfo(
            bytesUsed: usedBytes, objectCount: Int64(objects.count), quotaBytes: quotaBytes)
    }

    // MARK: - Internals

    private var usedBytes: Int64 { objects.values.reduce(0) { $0 + $1.info.size } }

    private func checkQuota(adding n: Int64, replacing key: ObjectKey) throws {
        guard let q = quotaBytes else { return }
        let replaced = objects[bytes: key]?.info.size ?? 0
        if usedBytes - replaced + n > q { throw StorageError.quotaExceeded }
    }

    private func validate(_ key: ObjectKey) throws {
        if key.isEmpty || key.utf8.count > 1024 {
            throw StorageError.invalidArgument("object name must be 1 to 1024 bytes")
        }
    }

    @discardableResult
    private func store(_ key: ObjectKey, chunks: [[UInt8]], options: PutOptions) -> ObjectInfo {
        version += 1
        let size = chunks.reduce(0) { $0 + $1.count }
        let info = ObjectInfo(
            key: key, size: Int64(size),
            etag: ETag("v\(version)-\(size)"), lastModified: clock(),
            contentType: options.contentType, metadata: options.metadata)
        let bytes = ByteString(key)
        if objects[bytes] == nil {
            sortedKeys.insert(bytes, at: lowerBound(bytes))
        }
        objects[bytes] = Stored(chunks: chunks.filter { !$0.isEmpty }, info: info)
        return info
    }

    /// First index whose key is not below `key`, in UTF-8 byte order.
    private func lowerBound(_ key: ByteString) -> Int {
        var lo = 0
        var hi = sortedKeys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sortedKeys[mid] < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// First index whose key is above `key`.
    private func upperBound(_ key: ByteString) -> Int {
        let i = lowerBound(key)
        return i < sortedKeys.count && sortedKeys[i] == key ? i + 1 : i
    }

    /// First index whose key does not start with `prefix` (after the keys that do).
    private func upperBoundOfPrefix(_ prefix: ByteString) -> Int {
        var lo = lowerBound(prefix)
        var hi = sortedKeys.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sortedKeys[mid].hasPrefix(prefix) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// The index just past the first occurrence of `needle` in `haystack`.
    static func endOfFirst(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i..<(i + needle.count)].elementsEqual(needle) {
            return i + needle.count
        }
        return nil
    }
}
