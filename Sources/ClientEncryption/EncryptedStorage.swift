// EncryptedStorage: a store whose objects are in ks3sdk's client-side encryption format
// (KS3Format.swift), read through any driver (ks3://, s3://, swift://, hubic://: the metadata
// under each driver's own prefix). Below ObjectFS (DESIGN.md §8): the filesystem sees the
// plaintext, its size, and ranged reads of it.
//
// Writes encrypt each file with a fresh IV and store it by one PUT (multipart is not written
// yet). An object without the encryption metadata is shown as it is (an empty file, which the
// SDK stores unencrypted, or one another tool wrote); one encrypted with another key is refused
// with EACCES.

import ObjectStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public struct EncryptedStorage: ObjectStorage {
    public let base: any ObjectStorage
    private let key: [UInt8]
    private let fingerprint: String
    private let scratch: String
    /// What a HEAD said of each version: encrypted (and its plaintext size) or not.
    private let versions = VersionTable()

    /// `scratch`: where bodies are encrypted before they are sent (the cache directory).
    public init(_ base: any ObjectStorage, key: [UInt8], scratch: String) {
        self.base = base
        self.key = key
        self.scratch = scratch
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
        // One object of another key does not fail the listing: its stat says EACCES.
        for i in page.objects.indices where page.objects[i].metadata != nil {
            if let shown = try? await plain(page.objects[i]) { page.objects[i] = shown }
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
        out.metadata = metadata.filter { !KS3Format.metadataNames.contains($0.key) }
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

    private static func unsupported(_ what: String) -> StorageError {
        .invalidArgument("\(what) is not supported in an encrypted mount (files are stored by single PUTs)")
    }

    /// Stores `payload` encrypted, with a fresh IV: the body is written to a file under
    /// `scratch` first (never held whole in memory), then sent. An empty file is stored as it is.
    public func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo {
        guard payload.length > 0 else { return try await base.put(key, payload: payload, options: options) }
        let iv = KS3Format.randomIV()
        var sealed = options
        sealed.metadata.merge(
            KS3Format.metadata(key: self.key, iv: iv, plainSize: payload.length, plainMD5: nil)
        ) { $1 }
        let (secret, scratch) = (self.key, self.scratch)
        let body = try await BlockingIOPool.shared.run {
            try EncryptedStorage.encrypt(payload, key: secret, iv: iv, in: scratch)
        }
        defer { unlink(body.path) }
        var info = try await base.put(
            key, payload: .file(path: body.path, offset: 0, length: body.length), options: sealed)
        info.metadata = sealed.metadata
        return try await plain(info)
    }

    /// Writes the body of `payload` (IV, cipher blocks, pad) to a new file in `directory`.
    static func encrypt(_ payload: Payload, key: [UInt8], iv: [UInt8], in directory: String) throws
        -> (path: String, length: Int64)
    {
        var template = Array((directory + "/encrypting-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw StorageError.localIO(errno, "create a file in \(directory)") }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { close(fd) }
        do {
            var encryptor = try KS3Format.Encryptor(key: key, iv: iv)
            let chunk: Int64 = 4 << 20
            var done: Int64 = 0
            var written: Int64 = 0
            repeat {
                let n = min(chunk, payload.length - done)
                let plain = try piece(of: payload, from: done, count: n).readBytes()
                let out = try encryptor.next(plain, last: done + n == payload.length)
                try out.withUnsafeBytes { buffer in
                    var at = 0
                    while at < buffer.count {
                        let w = pwrite(fd, buffer.baseAddress! + at, buffer.count - at, off_t(written) + off_t(at))
                        if w < 0 && errno == EINTR { continue }
                        guard w > 0 else { throw StorageError.localIO(errno, "write \(path)") }
                        at += w
                    }
                }
                written += Int64(out.count)
                done += n
            } while done < payload.length
            return (path, written)
        } catch {
            unlink(path)
            throw error
        }
    }

    private static func piece(of payload: Payload, from offset: Int64, count: Int64) -> Payload {
        switch payload {
        case .bytes(let b): return .bytes(Array(b[Int(offset)..<Int(offset + count)]))
        case .file(let path, let start, _): return .file(path: path, offset: start + offset, length: count)
        }
    }

    /// A server-side copy keeps the encryption metadata, also when it replaces the rest.
    public func copy(from source: ObjectKey, to destination: ObjectKey, replacing metadata: PutOptions?)
        async throws -> ObjectInfo
    {
        var replacing = metadata
        if var options = metadata, let stored = try await base.head(source).metadata {
            for name in KS3Format.metadataNames {
                if let value = stored[name] { options.metadata[name] = value }
            }
            replacing = options
        }
        return try await plain(try await base.copy(from: source, to: destination, replacing: replacing))
    }

    public func delete(_ keys: [ObjectKey]) async throws { try await base.delete(keys) }
    public func removeAfterMove(_ keys: [ObjectKey]) async throws { try await base.removeAfterMove(keys) }
    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload {
        throw Self.unsupported("a multipart upload")
    }
    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        throw Self.unsupported("a multipart upload")
    }
    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws
        -> ObjectInfo
    { throw Self.unsupported("a multipart upload") }
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
