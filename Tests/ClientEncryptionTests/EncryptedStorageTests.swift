// EncryptedStorage over a store holding objects in ks3sdk's format (made by the codec that
// KS3FormatTests checks against the SDK): plaintext sizes, whole and ranged reads, objects
// without encryption metadata shown as they are, another key refused, writes by single PUTs and
// by multipart uploads whose parts chain CBC.

import Foundation
import MemoryStorage
import ObjectStorage
import Testing

@testable import ClientEncryption

@Suite struct EncryptedStorageTests {
    let key = Array("1234567890123456".utf8)
    let iv: [UInt8] = Array(0..<16)

    /// Stores `plain` in the SDK's format under `name` (with or without the length metadata).
    func store(_ memory: MemoryStorage, _ name: String, _ plain: [UInt8], length: Bool = true) async throws {
        var meta = KS3Format.metadata(key: key, iv: iv, plainSize: Int64(plain.count), plainMD5: nil)
        if !length { meta[KS3Format.lengthMetadata] = nil }
        meta["mtime"] = "1700000000"
        _ = try await memory.put(
            name, payload: .bytes(try KS3Format.encrypt(plain, key: key, iv: iv)), options: PutOptions(metadata: meta))
    }

    @Test func sizesAndBytesAreThePlaintextsWholeAndByRange() async throws {
        let memory = MemoryStorage()
        let storage = EncryptedStorage(memory, key: key, scratch: scratch())
        for n in [1, 15, 16, 17, 1000, 70_001] {
            let plain = plaintext(n)
            try await store(memory, "f\(n)", plain, length: n % 2 == 0)
            let info = try await storage.head("f\(n)")
            #expect(info.size == Int64(n))
            // The encryption metadata is the store's business; the rest is the file's.
            #expect(info.metadata == ["mtime": "1700000000"])
            #expect(try await storage.get("f\(n)", range: nil, ifMatch: nil) == plain)
            #expect(try await storage.get("f\(n)", range: nil, ifMatch: info.etag) == plain)
            for (s, l) in [(0, 1), (n - 1, 1), (n / 2, 33), (1, n), (0, n + 100)] where s < n {
                let got = try await storage.get(
                    "f\(n)", range: ByteRange(offset: Int64(s), length: Int64(l)), ifMatch: nil)
                #expect(got == Array(plain[s..<min(n, s + l)]), "n \(n) \(s)+\(l)")
            }
            #expect(try await storage.get("f\(n)", range: ByteRange(offset: Int64(n), length: 5), ifMatch: nil) == [])
        }
    }

    @Test func objectsWithoutEncryptionMetadataAreShownAsTheyAre() async throws {
        let memory = MemoryStorage()
        let storage = EncryptedStorage(memory, key: key, scratch: scratch())
        _ = try await memory.put("plain", payload: .bytes(Array("hello".utf8)), options: PutOptions())
        _ = try await memory.put("empty", payload: .bytes([]), options: PutOptions())
        #expect(try await storage.head("plain").size == 5)
        #expect(
            try await storage.get("plain", range: ByteRange(offset: 1, length: 3), ifMatch: nil) == Array("ell".utf8))
        #expect(try await storage.get("empty", range: nil, ifMatch: nil) == [])
        #expect(try await storage.list(prefix: "", delimiter: "/", continuation: nil, maxKeys: nil).objects.count == 2)
    }

    @Test func writesAreStoredInTheFormatAndCopiesKeepIt() async throws {
        let memory = MemoryStorage()
        let dir = scratch()
        let storage = EncryptedStorage(memory, key: key, scratch: dir)
        for n in [1, 16, 17, 5 << 20] {
            let plain = plaintext(n)
            let put = try await storage.put(
                "w\(n)", payload: .bytes(plain), options: PutOptions(metadata: ["mode": "420"]))
            #expect(put.size == Int64(n) && put.metadata == ["mode": "420"])
            // On the server: the SDK's body and metadata.
            let stored = try await memory.head("w\(n)")
            #expect(stored.size == KS3Format.bodySize(plainSize: Int64(n)))
            #expect(stored.metadata?["key"] == KS3Format.fingerprint(key: key))
            #expect(stored.metadata?["unencrypted-content-length"] == String(n))
            let body = try await memory.get("w\(n)", range: nil, ifMatch: nil)
            #expect(try KS3Format.decrypt(body, key: key) == plain)
            #expect(try await storage.get("w\(n)", range: nil, ifMatch: put.etag) == plain)
        }
        // From a file region, as uploads send staged files.
        let path = dir + "/staged"
        #expect(FileManager.default.createFile(atPath: path, contents: Data([9, 9] + plaintext(40) + [9])))
        _ = try await storage.put("fromFile", payload: .file(path: path, offset: 2, length: 40), options: PutOptions())
        #expect(try await storage.get("fromFile", range: nil, ifMatch: nil) == plaintext(40))
        // A copy that replaces the metadata (chmod, a rename) keeps the encryption's.
        let copied = try await storage.copy(
            from: "w17", to: "moved", replacing: PutOptions(metadata: ["mode": "384"]))
        #expect(copied.size == 17 && copied.metadata == ["mode": "384"])
        #expect(try await storage.get("moved", range: nil, ifMatch: nil) == plaintext(17))
        // An empty file is stored as it is.
        _ = try await storage.put("empty", payload: .bytes([]), options: PutOptions())
        #expect(try await memory.head("empty").metadata?["key"] == nil)
        // Nothing is left in the scratch directory.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("encrypting") }.isEmpty)
    }

    /// A multipart upload's parts, sent as ObjectFS sends them (begun in order, several at
    /// once), chain CBC into the body a single PUT would have: the SDK's multipart format. The
    /// last part carries the pad, or a part of its own does when the last is a whole one.
    @Test(arguments: [
        3 * part + 100,  // a short last part, not a multiple of 16
        2 * part + 32,  // a short last part, a multiple of 16
        3 * part,  // a whole last part: the pad goes alone
        part,  // one whole part
        part / 2,  // one part below the server's smallest: it carries the pad
    ])
    func multipartUploadsChainTheirPartsInOrder(size: Int) async throws {
        let memory = MemoryStorage(minimumPartSize: Int64(part))
        let dir = scratch()
        let storage = EncryptedStorage(memory, key: key, scratch: dir)
        let plain = plaintext(size)
        let upload = try await storage.createMultipartUpload("big", options: PutOptions(metadata: ["mode": "420"]))
        let count = (size + part - 1) / part
        let parts = try await withThrowingTaskGroup(of: UploadedPart.self) { group in
            for n in 1...count {
                let bytes = Array(plain[(n - 1) * part..<min(size, n * part)])
                group.addTask { try await storage.uploadPart(upload, number: n, payload: .bytes(bytes)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let info = try await storage.completeMultipartUpload(upload, parts: parts)
        #expect(info.size == Int64(size))
        let stored = try await memory.head("big")
        #expect(stored.size == KS3Format.bodySize(plainSize: Int64(size)))
        #expect(stored.metadata?["key"] == KS3Format.fingerprint(key: key) && stored.metadata?["mode"] == "420")
        // No length in the metadata (the SDK's multipart objects have none): the pad says it.
        #expect(stored.metadata?["unencrypted-content-length"] == nil)
        let body = try await memory.get("big", range: nil, ifMatch: nil)
        #expect(try KS3Format.decrypt(body, key: key) == plain)
        #expect(try await EncryptedStorage(memory, key: key, scratch: dir).head("big").size == Int64(size))
        // Across the first parts' boundary, or the last bytes.
        let from = min(part - 5, size - 10)
        #expect(
            try await storage.get("big", range: ByteRange(offset: Int64(from), length: 10), ifMatch: info.etag)
                == Array(plain[from..<(from + 10)]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("encrypting") }.isEmpty)
    }

    /// A part that waits for the one before it fails with it, and nothing is stored.
    @Test func aPartThatCannotBeEncryptedFailsThePartsAfterIt() async throws {
        let memory = MemoryStorage(minimumPartSize: Int64(part))
        let storage = EncryptedStorage(memory, key: key, scratch: scratch())
        let upload = try await storage.createMultipartUpload("big", options: PutOptions())
        let second = Task { try await storage.uploadPart(upload, number: 2, payload: .bytes(plaintext(part))) }
        // Part 1 reads a file that is not there.
        await #expect(throws: StorageError.self) {
            _ = try await storage.uploadPart(
                upload, number: 1, payload: .file(path: "/nonexistent", offset: 0, length: 16))
        }
        await #expect(throws: (any Error).self) { _ = try await second.value }
        try await storage.abortMultipartUpload(upload)
        await #expect(throws: StorageError.self) { _ = try await memory.head("big") }
    }

    /// A streamed ranged read is decrypted as its body arrives, whatever the chunks (cut inside
    /// the IV and inside blocks) and a retry that repeats bytes already received.
    @Test func streamedReadsAreDecryptedChunkByChunk() async throws {
        let n = 5000
        let plain = plaintext(n)
        let body = try KS3Format.encrypt(plain, key: key, iv: iv)
        for (s, l) in [(0, n), (0, 1), (17, 100), (n - 3, 3), (31, 4000), (4096, 904)] {
            let (range, skip) = try #require(
                KS3Format.bodyRange(forPlain: Int64(s)..<Int64(s + l), plainSize: Int64(n)))
            let fetched = Array(body[Int(range.lowerBound)..<Int(range.upperBound)])
            for chunk in [1, 7, 16, 33, 4096] {
                let collected = Collecting()
                let sink = DecryptingSink(into: collected, key: key, skip: skip, count: l)
                var at = 0
                sink.begin(at: 0)
                while at < fetched.count {
                    let end = min(fetched.count, at + chunk)
                    fetched[at..<end].withUnsafeBytes { sink.append($0) }
                    await sink.drain()
                    at = end
                    if at == 40 {
                        // A retry that starts over repeats the first 40 bytes.
                        sink.begin(at: 0)
                        fetched[0..<40].withUnsafeBytes { sink.append($0) }
                    }
                }
                try sink.finish()
                #expect(collected.bytes == Array(plain[s..<(s + l)]), "\(s)+\(l) in chunks of \(chunk)")
            }
        }
        // Through the store: the same bytes as a read into memory.
        let memory = MemoryStorage()
        try await store(memory, "f", plain)
        let storage = EncryptedStorage(memory, key: key, scratch: scratch())
        let collected = Collecting()
        try await storage.get("f", range: ByteRange(offset: 100, length: 1000), ifMatch: nil, into: collected)
        #expect(collected.bytes == Array(plain[100..<1100]))
        // A body cut short is an error, not a short read.
        let short = DecryptingSink(into: Collecting(), key: key, skip: 0, count: 100)
        body[0..<64].withUnsafeBytes { short.append($0) }
        #expect(throws: EncryptionError.self) { try short.finish() }
    }

    @Test func anotherKeyIsRefused() async throws {
        let memory = MemoryStorage()
        try await store(memory, "secret", plaintext(100))
        let other = EncryptedStorage(memory, key: Array("6543210987654321".utf8), scratch: scratch())
        await #expect {
            _ = try await other.head("secret")
        } throws: { error in
            (error as? StorageError)?.errno == 13 && "\(error)".contains("another key")
        }
        await #expect(throws: StorageError.self) { _ = try await other.get("secret", range: nil, ifMatch: nil) }
    }
}

final class Collecting: BodySink, @unchecked Sendable {
    var bytes: [UInt8] = []
    func begin(at: Int64) { bytes.removeLast(bytes.count - Int(at)) }
    func append(_ b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }
    func drain() async {}
}

/// The part size of the multipart tests (their MemoryStorage's smallest).
let part = 64 << 10

/// A new directory for encrypted bodies on their way.
func scratch() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("encrypted-storage-\(UUID().uuidString)")
        .path
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The plaintext make_vectors.py encrypts.
func plaintext(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(($0 * 7 + 3) % 251) } }
