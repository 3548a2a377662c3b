// EncryptedStorage: a store whose objects are in ks3sdk's client-side encryption format
// (KS3Format.swift), read through any driver (ks3://, s3://, swift://, hubic://: the metadata
// under each driver's own prefix). Below ObjectFS (DESIGN.md §8): the filesystem sees the
// plaintext, its size, and ranged reads of it.
//
// Writes encrypt each file with a fresh IV: a single PUT, or a multipart upload whose parts
// chain CBC in order as the SDK's do (`PartChains`). An object without the encryption metadata
// is shown as it is (an empty file, which the SDK stores unencrypted, or one another tool
// wrote); one encrypted with another key is refused with EACCES.

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
    /// The CBC chain of each multipart upload in progress.
    private let chains = PartChains()

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
        c.maximumPartCount -= 1  // room for a part of the pad alone
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

    /// A ranged read decrypted as the body arrives (DecryptingSink): the cipher blocks that
    /// hold the range and the one before it (its IV), streamed into `sink`.
    public func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?, into sink: any BodySink) async throws {
        guard let size = try await plainSize(key, ifMatch) else {
            return try await base.get(key, range: range, ifMatch: ifMatch, into: sink)
        }
        let wanted = range.map { $0.offset..<$0.end } ?? 0..<size
        guard let (body, skip) = KS3Format.bodyRange(forPlain: wanted, plainSize: size) else {
            sink.begin(at: 0)
            await sink.drain()
            return
        }
        let count = Int(min(wanted.upperBound, size) - wanted.lowerBound)
        let decrypting = DecryptingSink(into: sink, key: self.key, skip: skip, count: count)
        try await base.get(
            key, range: ByteRange(offset: body.lowerBound, length: Int64(body.count)), ifMatch: ifMatch,
            into: decrypting)
        try decrypting.finish()
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
        let body = try await sealedBody(payload, iv: iv, continuing: false, last: true)
        defer { unlink(body.path) }
        var info = try await base.put(
            key, payload: .file(path: body.path, offset: 0, length: body.length), options: sealed)
        info.metadata = sealed.metadata
        return try await plain(info)
    }

    /// `payload` encrypted from `iv` into a new file under `scratch`.
    private func sealedBody(_ payload: Payload, iv: [UInt8], continuing: Bool, last: Bool) async throws
        -> EncryptedBody
    {
        let (secret, scratch) = (self.key, self.scratch)
        return try await BlockingIOPool.shared.run {
            var encryptor = try KS3Format.Encryptor(key: secret, iv: iv, continuing: continuing)
            return try EncryptedStorage.encrypt(payload, with: &encryptor, last: last, in: scratch)
        }
    }

    struct EncryptedBody {
        var path: String
        var length: Int64
        /// The last cipher block: the IV of what follows.
        var chain: [UInt8]
    }

    /// Writes what `encryptor` makes of `payload` (with the pad if `last`) to a new file in
    /// `directory`, reading and writing 1 MiB at a time.
    static func encrypt(_ payload: Payload, with encryptor: inout KS3Format.Encryptor, last: Bool, in directory: String)
        throws -> EncryptedBody
    {
        var template = Array((directory + "/encrypting-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw StorageError.localIO(errno, "create a file in \(directory)") }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        defer { close(fd) }
        do {
            let chunk: Int64 = 1 << 20
            var done: Int64 = 0
            var written: Int64 = 0
            repeat {
                let n = min(chunk, payload.length - done)
                let plain = try piece(of: payload, from: done, count: n).readBytes()
                let out = try encryptor.next(plain, last: last && done + n == payload.length)
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
            return EncryptedBody(path: path, length: written, chain: encryptor.chain)
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

    /// Begins an upload whose parts chain CBC from a fresh IV. Its metadata has the key's
    /// fingerprint and the IV, not the plaintext size (not known yet; the SDK's multipart
    /// objects have none either): a HEAD of it reads the pad in its last block.
    public func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload {
        let iv = KS3Format.randomIV()
        var sealed = options
        var metadata = KS3Format.metadata(key: self.key, iv: iv, plainSize: 0, plainMD5: nil)
        metadata[KS3Format.lengthMetadata] = nil
        sealed.metadata.merge(metadata) { $1 }
        let upload = try await base.createMultipartUpload(key, options: sealed)
        chains.begin(upload, iv: iv)
        return upload
    }

    /// Encrypts part `number` from where part `number - 1` ended (waiting for that part's
    /// encryption, not for its upload), then sends it. Parts are begun in order and all but the
    /// last have one size, a multiple of 16 and at least the server's smallest part: a part
    /// shorter than the first or than that, or not a multiple of 16, is the last and carries
    /// the pad. Where the last part is a whole one, the pad goes in a part of its own at
    /// completion.
    public func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        let iv: [UInt8]
        let last: Bool
        do {
            iv = try await chains.chain(before: number, of: upload)
            last = try chains.isLast(
                number, length: payload.length, of: upload, minimumPartSize: base.capabilities.minimumPartSize)
            let body = try await sealedBody(payload, iv: iv, continuing: number > 1, last: last)
            defer { unlink(body.path) }
            chains.ended(number, of: upload, chain: body.chain, plainLength: payload.length, last: last)
            return try await base.uploadPart(
                upload, number: number, payload: .file(path: body.path, offset: 0, length: body.length))
        } catch {
            // The parts waiting for this one's chain fail with it.
            chains.failed(number, of: upload, error)
            if let failure = error as? PartChains.Failure {
                throw StorageError.invalidArgument("\(upload.key): \(failure.reason)")
            }
            throw error
        }
    }

    public func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws
        -> ObjectInfo
    {
        defer { chains.end(upload) }
        let sorted = parts.sorted { $0.number < $1.number }
        guard let (size, pad) = chains.finish(upload, parts: sorted.map(\.number)) else {
            throw StorageError.invalidArgument("\(upload.key): the parts are not a whole CBC chain")
        }
        var all = sorted
        if let pad {
            // The last part was whole: the pad block goes alone, chained from it.
            var encryptor = try KS3Format.Encryptor(key: key, iv: pad, continuing: true)
            let block = try encryptor.next([], last: true)
            all.append(try await base.uploadPart(upload, number: sorted.count + 1, payload: .bytes(block)))
        }
        var info = try await base.completeMultipartUpload(upload, parts: all)
        if let etag = info.etag { versions.set(etag, size) }
        info.size = size
        info.metadata = info.metadata?.filter { !KS3Format.metadataNames.contains($0.key) }
        return info
    }

    public func abortMultipartUpload(_ upload: MultipartUpload) async throws {
        chains.end(upload)
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

/// The CBC chain of each multipart upload in progress: the IV, and for each part encrypted
/// the cipher block it ended with (the IV of the next). A part waits for the one before it.
final class PartChains: Sendable {
    struct Failure: Error { var reason: String }

    private struct Chain {
        var ends: [Int: [UInt8]]
        var plainLengths: [Int: Int64] = [:]
        var last: Int?
        var failed: [Int: any Error] = [:]
        var waiters: [Int: [CheckedContinuation<[UInt8], any Error>]] = [:]
    }

    private let table = Mutex<[MultipartUpload: Chain]>([:])

    func begin(_ upload: MultipartUpload, iv: [UInt8]) {
        table.withLock { $0[upload] = Chain(ends: [0: iv]) }
    }

    /// The IV of part `number`: the end of part `number - 1`, once it is encrypted.
    func chain(before number: Int, of upload: MultipartUpload) async throws -> [UInt8] {
        try await withTaskCancellationHandler {
            try await waitForChain(before: number, of: upload)
        } onCancel: {
            failed(number - 1, of: upload, CancellationError(), keep: false)
        }
    }

    private func waitForChain(before number: Int, of upload: MultipartUpload) async throws -> [UInt8] {
        try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<[UInt8], any Error>) in
            table.withLock { table in
                guard var chain = table[upload] else {
                    return waiter.resume(throwing: Failure(reason: "no upload in progress for part \(number)"))
                }
                if let end = chain.ends[number - 1] { return waiter.resume(returning: end) }
                if let error = chain.failed[number - 1] { return waiter.resume(throwing: error) }
                if let last = chain.last, number > last {
                    return waiter.resume(throwing: Failure(reason: "part \(number) after the last, \(last)"))
                }
                chain.waiters[number - 1, default: []].append(waiter)
                table[upload] = chain
            }
        }
    }

    /// Whether part `number` of `length` bytes is the last (see `uploadPart`); throws for a
    /// part that cannot be in a chain.
    func isLast(_ number: Int, length: Int64, of upload: MultipartUpload, minimumPartSize: Int64) throws -> Bool {
        let first = table.withLock { $0[upload]?.plainLengths[1] }
        let last =
            length % Int64(KS3Format.blockSize) != 0 || length < minimumPartSize
            || (number > 1 && first.map { length < $0 } ?? false)
        if !last, number > 1, let first, length != first {
            throw Failure(reason: "part \(number) of \(length) bytes, longer than the first (\(first))")
        }
        if length == 0 { throw Failure(reason: "an empty part \(number)") }
        return last
    }

    /// Part `number` is encrypted: the parts waiting for it go on.
    func ended(_ number: Int, of upload: MultipartUpload, chain end: [UInt8], plainLength: Int64, last: Bool) {
        let waiting = table.withLock { table -> [CheckedContinuation<[UInt8], any Error>] in
            guard var chain = table[upload] else { return [] }
            chain.ends[number] = end
            chain.plainLengths[number] = plainLength
            if last { chain.last = number }
            let waiting = chain.waiters.removeValue(forKey: number) ?? []
            table[upload] = chain
            return waiting
        }
        for w in waiting { w.resume(returning: end) }
    }

    /// Part `number` could not be encrypted: those waiting for it fail too (and those that
    /// ask later, unless `keep` is false: a waiter cancelled).
    func failed(_ number: Int, of upload: MultipartUpload, _ error: any Error, keep: Bool = true) {
        let waiting = table.withLock { table -> [CheckedContinuation<[UInt8], any Error>] in
            guard var chain = table[upload], chain.ends[number] == nil else { return [] }
            if keep { chain.failed[number] = error }
            let waiting = chain.waiters.removeValue(forKey: number) ?? []
            table[upload] = chain
            return waiting
        }
        for w in waiting { w.resume(throwing: error) }
    }

    /// For parts `numbers` (sorted): the plaintext size, and the chain to pad from when the
    /// last part was a whole one (nil when it carried the pad). Nil when they are not parts
    /// 1...n, each encrypted, none after the one that carries the pad.
    func finish(_ upload: MultipartUpload, parts numbers: [Int]) -> (size: Int64, pad: [UInt8]?)? {
        table.withLock { table in
            guard let chain = table[upload], !numbers.isEmpty, numbers == Array(1...numbers.count) else { return nil }
            var size: Int64 = 0
            for n in numbers {
                guard let length = chain.plainLengths[n] else { return nil }
                size += length
            }
            if let last = chain.last {
                return last == numbers.count ? (size, nil) : nil
            }
            return (size, chain.ends[numbers.count])
        }
    }

    /// The upload is completed or aborted: its chain goes, and parts still waiting fail.
    func end(_ upload: MultipartUpload) {
        let waiting = table.withLock { $0.removeValue(forKey: upload)?.waiters.values.flatMap { $0 } ?? [] }
        for w in waiting { w.resume(throwing: CancellationError()) }
    }
}
