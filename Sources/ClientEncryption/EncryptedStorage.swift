// EncryptedStorage: a store whose objects are in ks3sdk's client-side encryption format
// (KS3Format.swift), read through any driver (ks3://, s3://, swift://, hubic://: the metadata
// under each driver's own prefix). Below ObjectFS (DESIGN.md §8): the filesystem sees the
// plaintext, its size, and ranged reads of it.
//
// Reading only, for now: writes are refused (the daemon mounts read-only), so nothing is ever
// stored unencrypted by mistake. An object without the encryption metadata is shown as it is
// (an empty file, which the SDK stores unencrypted, or one another tool wrote); one encrypted
// with another key is refused with EACCES.

import ObjectStorage
import Synchronization

public struct EncryptedStorage: ObjectStorage {
    public let base: any ObjectStorage
    private let key: [UInt8]
    private let fingerprint: String
    /// What a HEAD said of each version: encrypted (and its plaintext size) or not.
    private let versions = VersionTable()

    public init(_ base: any ObjectStorage, key: [UInt8]) {
        self.base = base
        self.key = key
        fingerprint = KS3Format.fingerprint(key: key)
    }

    public var capabilities: StorageCapabilities {
        var c = base.capabilities
        c.copiesParts = false  // a part of a CBC chain cannot be reused elsewhere in it
        return c
    }

    /// A listing cannot tell an encrypted object or its plaintext size (no metadata): its
    /// entries keep the stored size, and a stat (HEAD) gives the plaintext's.
    public func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws
        -> ListPage
    {
        var page = try await base.list(
            prefix: prefix, delimiter: delimiter, continuation: continuation, maxKeys: maxKeys)
        for i in page.objects.indices where page.objects[i].metadata != nil {
            page.objects[i] = try await plain(page.objects[i])
        }
        return page
    }

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        try await plain(try await base.head(key))
    }

    /// `info` as the filesystem sees it: the plaintext size, without the encryption metadata.
    private func plain(_ info: ObjectInfo) async throws -> ObjectInfo {
        guard let metadata = info.metadata, let stored = metadata[KS3Format.keyMetadata],
            metadata[KS3Format.ivMetadata] != nil, info.size > 0
        else {
            if let etag = info.etag { versions.set(etag, nil) }
            return info
        }
        guard stored == fingerprint else {
            throw StorageError.accessDenied(
                "\(info.key) was encrypted with another key (key fingerprint \(stored), this key's \(fingerprint))")
        }
        var size: Int64
        if let length = metadata[KS3Format.lengthMetadata].flatMap({ Int64($0) }), length >= 0,
            KS3Format.bodySize(plainSize: length) == info.size
        {
            size = length
        } else {
            // No (or a wrong) length: the pad in the last block says.
            let tail = try await base.get(
                info.key, range: ByteRange(offset: max(0, info.size - 32), length: min(32, info.size)),
                ifMatch: info.etag)
            size = try KS3Format.plainSize(bodySize: info.size, lastTwoBlocks: tail, key: self.key)
        }
        if let etag = info.etag { versions.set(etag, size) }
        var out = info
        out.size = size
        out.metadata = metadata.filter {
            ![KS3Format.keyMetadata, KS3Format.ivMetadata, KS3Format.lengthMetadata, KS3Format.md5Metadata]
                .contains($0.key)
        }
        return out
    }

    /// The plaintext size of `key` at version `etag`, nil if it is not encrypted: from the last
    /// HEAD of that version, else from a new one.
    private func plainSize(_ key: ObjectKey, _ etag: ETag?) async throws -> Int64? {
        if let etag, let known = versions.get(etag) { return known }
        let info = try await head(key)
        if let etag, info.etag != etag { throw StorageError.preconditionFailed(key) }
        return versions.get(info.etag ?? ETag("")) ?? nil
    }

    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] {
        guard let size = try await plainSize(key, ifMatch) else {
            return try await base.get(key, range: range, ifMatch: ifMatch)
        }
        let wanted = range.map { $0.offset..<$0.end } ?? 0..<size
        guard let (body, _) = KS3Format.bodyRange(forPlain: wanted, plainSize: size) else { return [] }
        let fetched = try await base.get(
            key, range: ByteRange(offset: body.lowerBound, length: Int64(body.count)), ifMatch: ifMatch)
        return try KS3Format.decrypt(fetched: fetched, forPlain: wanted, plainSize: size, key: self.key)
    }

    private static func readOnly() -> StorageError {
        .accessDenied("an encrypted mount is read-only: writing in ks3sdk's format is not supported yet")
    }

    public func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo {
        throw Self.readOnly()
    }
    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing metadata: PutOptions?)
        async throws -> ObjectInfo
    { throw Self.readOnly() }
    public func delete(_ keys: [ObjectKey]) async throws { throw Self.readOnly() }
    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload {
        throw Self.readOnly()
    }
    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        throw Self.readOnly()
    }
    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws
        -> ObjectInfo
    { throw Self.readOnly() }
    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        try await base.abortMultipartUpload(upload)
    }
    public func accountInfo() async throws -> AccountInfo { try await base.accountInfo() }
}

/// Versions (by ETag) seen by a HEAD: their plaintext size, or nil for one not encrypted. A
/// bounded table: past 65,536 versions it starts over (a later read asks its HEAD again).
final class VersionTable: Sendable {
    private let table = Mutex<[ETag: Int64?]>([:])

    func set(_ etag: ETag, _ size: Int64?) {
        table.withLock {
            if $0.count >= 65_536 { $0.removeAll() }
            $0[etag] = .some(size)
        }
    }

    /// `.some(nil)`: known not encrypted; nil: not known.
    func get(_ etag: ETag) -> Int64?? { table.withLock { $0[etag] } }
}
