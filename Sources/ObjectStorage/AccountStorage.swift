// AccountStorage: a whole account (Swift containers, S3 or KS3 buckets) as one key space, for
// account-level mounts. The first path segment is the bucket: `photos/2024/cat.jpg` is key
// `2024/cat.jpg` in bucket `photos`. To the filesystem a bucket is a directory with a marker:
// - listing the root lists the buckets (as common prefixes),
// - `head("b")` or `head("b/")` of an existing bucket answers like a directory marker,
// - writing the marker of a top-level directory (mkdir) creates the bucket,
// - deleting it (rmdir, after the filesystem checked it is empty) deletes the bucket.
// Everything below the first segment goes to that bucket's storage. A driver provides the
// account operations as a `BucketService`; the mapping lives here once for all of them.

/// The account-level operations of a driver.
public protocol BucketService: Sendable {
    var capabilities: StorageCapabilities { get }
    /// Bucket names starting with `prefix`, in byte order, after `marker`; `more` when the
    /// server has further names.
    func listBuckets(prefix: String, after marker: String?, limit: Int) async throws -> (names: [String], more: Bool)
    /// Throws `.notFound` when the bucket does not exist.
    func headBucket(_ name: String) async throws
    /// Creates a bucket (one that exists and is ours is not an error).
    func createBucket(_ name: String) async throws
    /// Deletes an empty bucket; `.notEmpty` otherwise.
    func deleteBucket(_ name: String) async throws
    /// The storage of one bucket (made once and reused).
    func bucket(_ name: String) -> any ObjectStorage
    /// Server-side copy, possibly between buckets. `metadata == nil` keeps the source's.
    func copy(
        from source: ObjectKey, inBucket sourceBucket: String, to destination: ObjectKey, inBucket bucket: String,
        replacing metadata: PutOptions?
    ) async throws -> ObjectInfo
    func accountInfo() async throws -> AccountInfo
}

public final class AccountStorage: ObjectStorage {
    public let service: any BucketService
    public var capabilities: StorageCapabilities {
        var c = service.capabilities
        c.topLevelObjects = false
        return c
    }

    public init(_ service: any BucketService) {
        self.service = service
    }

    /// `b/rest` → ("b", "rest"); `b` → ("b", nil). Split at the first "/" byte: a "/" next
    /// to a combining mark or after a prepended concatenation mark is part of one `Character`,
    /// which `firstIndex(of: "/")` would not find, and slicing a `String` by an index inside a
    /// `Character` rounds it down.
    static func split(_ key: String) -> (bucket: String, rest: String?) {
        let utf8 = key.utf8
        guard let slash = utf8.firstIndex(of: UInt8(ascii: "/")) else { return (key, nil) }
        return (
            String(decoding: utf8[..<slash], as: UTF8.self),
            String(decoding: utf8[utf8.index(after: slash)...], as: UTF8.self)
        )
    }

    /// `keys` grouped by bucket, the bucket names told apart by their bytes.
    static func groupedByBucket(_ keys: [ObjectKey]) -> [(bucket: String, keys: [ObjectKey])] {
        Dictionary(grouping: keys, by: { split($0).bucket.byteString }).map { ($0.key.string, $0.value) }
    }

    static func prefixed(_ info: ObjectInfo, _ bucket: String) -> ObjectInfo {
        var info = info
        info.key = bucket + "/" + info.key
        return info
    }

    // MARK: - Listing

    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws -> ListPage
    {
        let (name, rest) = Self.split(prefix)
        guard let rest else {
            let limit = min(max(1, maxKeys ?? 1000), 10_000)
            let page = try await service.listBuckets(
                prefix: name, after: continuation.map { String(decoding: $0.utf8.dropLast(), as: UTF8.self) },
                limit: limit)
            let prefixes = page.names.map { $0 + "/" }
            return ListPage(objects: [], commonPrefixes: prefixes, continuation: page.more ? prefixes.last : nil)
        }
        let page: ListPage
        do {
            page = try await service.bucket(name).list(
                prefix: rest, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
        } catch StorageError.notFound {
            return ListPage(objects: [], commonPrefixes: [], continuation: nil)
        }
        return ListPage(
            objects: page.objects.map { Self.prefixed($0, name) },
            commonPrefixes: page.commonPrefixes.map { name + "/" + $0 },
            continuation: page.continuation)
    }

    // MARK: - Objects

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        let (name, rest) = Self.split(key)
        guard let rest, !rest.isEmpty else {
            // A bucket: a directory marker that exists while the bucket does.
            try await service.headBucket(name)
            return ObjectInfo(
                key: key, size: 0, etag: nil, lastModified: .zero, contentType: "application/directory", metadata: [:])
        }
        return Self.prefixed(try await service.bucket(name).head(rest), name)
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] {
        let (name, rest) = Self.split(key)
        guard let rest, !rest.isEmpty else { return [] }
        return try await service.bucket(name).get(rest, range: range, ifMatch: ifMatch)
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?, into sink: any BodySink) async throws {
        let (name, rest) = Self.split(key)
        guard let rest, !rest.isEmpty else { return sink.begin(at: 0) }
        try await service.bucket(name).get(rest, range: range, ifMatch: ifMatch, into: sink)
    }

    public func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo {
        let (name, rest) = Self.split(key)
        guard let rest, !rest.isEmpty else {
            // mkdir at the account root (a directory marker): create the bucket.
            guard payload.length == 0,
                options.contentType?.hasPrefix("application/directory") == true
                    || key.utf8.last == UInt8(ascii: "/")
            else {
                throw StorageError.accessDenied("files cannot be stored at the account level, only in buckets")
            }
            // A bucket that exists already (a chmod or utimes of it) stays as it is: buckets
            // keep no mode or mtime.
            if (try? await service.headBucket(name)) == nil { try await service.createBucket(name) }
            return try await head(name)
        }
        return Self.prefixed(try await service.bucket(name).put(rest, payload: payload, options: options), name)
    }

    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing: PutOptions?) async throws
        -> ObjectInfo
    {
        let (sourceBucket, sourceKey) = Self.split(source)
        let (bucket, key) = Self.split(destination)
        guard let sourceKey, let key, !sourceKey.isEmpty, !key.isEmpty else {
            throw StorageError.accessDenied("buckets cannot be renamed")
        }
        let info = try await service.copy(
            from: sourceKey, inBucket: sourceBucket, to: key, inBucket: bucket, replacing: replacing)
        return Self.prefixed(info, bucket)
    }

    public func delete(_ keys: [ObjectKey]) async throws {
        for (name, group) in Self.groupedByBucket(keys) {
            let objects = group.compactMap { Self.split($0).rest }.filter { !$0.isEmpty }
            if !objects.isEmpty { try await service.bucket(name).delete(objects) }
            if objects.count < group.count {
                do { try await service.deleteBucket(name) } catch StorageError.notFound {}
            }
        }
    }

    public func removeAfterMove(_ keys: [ObjectKey]) async throws {
        for (name, group) in Self.groupedByBucket(keys) {
            try await service.bucket(name).removeAfterMove(
                group.compactMap { Self.split($0).rest }.filter { !$0.isEmpty })
        }
    }

    // MARK: - Multipart

    func inner(_ upload: MultipartUpload) -> (any ObjectStorage, MultipartUpload) {
        let (name, rest) = Self.split(upload.key)
        return (service.bucket(name), MultipartUpload(key: rest ?? "", uploadID: upload.uploadID))
    }

    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload {
        let (name, rest) = Self.split(key)
        let u = try await service.bucket(name).createMultipartUpload(rest ?? "", options: options)
        return MultipartUpload(key: key, uploadID: u.uploadID)
    }

    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        let (s, u) = inner(upload)
        return try await s.uploadPart(u, number: number, payload: payload)
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> ObjectInfo {
        let (s, u) = inner(upload)
        var info = try await s.completeMultipartUpload(u, parts: parts)
        info.key = upload.key
        return info
    }

    public func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: ObjectKey, range: ByteRange, ifMatch: ETag?
    ) async throws -> UploadedPart {
        let (s, u) = inner(upload)
        let (name, rest) = Self.split(source)
        guard name == Self.split(upload.key).0, let rest else {
            throw StorageError.invalidArgument("a part is copied from the same bucket")
        }
        return try await s.uploadPartCopy(u, number: number, from: rest, range: range, ifMatch: ifMatch)
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        let (s, u) = inner(upload)
        try await s.abortMultipartUpload(u)
    }

    public func accountInfo() async throws -> AccountInfo { try await service.accountInfo() }
}

extension AccountStorage: ObjectAttributeSource {
    public var attributeNames: [String] { (service.bucket("") as? any ObjectAttributeSource)?.attributeNames ?? [] }

    public func attribute(_ name: String, of key: ObjectKey) async throws -> String {
        let (bucket, rest) = Self.split(key)
        guard let rest, !rest.isEmpty, let source = service.bucket(bucket) as? any ObjectAttributeSource else {
            throw StorageError.notFound(key)
        }
        return try await source.attribute(name, of: rest)
    }
}
