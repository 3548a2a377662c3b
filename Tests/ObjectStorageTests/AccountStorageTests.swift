// AccountStorage maps an account's buckets to one key space; checked here over in-memory buckets.

import MemoryStorage
import ObjectStorage
import Synchronization
import Testing

/// Buckets held in memory, as a driver's BucketService would hold them on a server (names
/// told apart and sorted by their bytes).
final class MemoryBuckets: BucketService {
    let buckets = Mutex<[ByteString: MemoryStorage]>([:])
    var capabilities: StorageCapabilities {
        StorageCapabilities(directoryMarkerStyle: .trailingSlash, minimumPartSize: 1)
    }

    func listBuckets(prefix: String, after marker: String?, limit: Int) async throws -> (names: [String], more: Bool) {
        let all = buckets.withLock {
            $0.keys.filter { $0.hasPrefix(prefix.byteString) && (marker == nil || marker!.byteString < $0) }.sorted()
        }
        return (all.prefix(limit).map(\.string), all.count > limit)
    }
    func headBucket(_ name: String) async throws {
        guard buckets.withLock({ $0[bytes: name] }) != nil else { throw StorageError.notFound("bucket \(name)") }
    }
    func createBucket(_ name: String) async throws {
        buckets.withLock { if $0[bytes: name] == nil { $0[bytes: name] = MemoryStorage(minimumPartSize: 1) } }
    }
    func deleteBucket(_ name: String) async throws {
        guard let b = buckets.withLock({ $0[bytes: name] }) else { throw StorageError.notFound("bucket \(name)") }
        if try await !b.list(prefix: "", delimiter: nil, continuation: nil, maxKeys: 1).objects.isEmpty {
            throw StorageError.notEmpty("bucket \(name)")
        }
        _ = buckets.withLock { $0.removeValue(forKey: name.byteString) }
    }
    func bucket(_ name: String) -> any ObjectStorage {
        buckets.withLock { $0[bytes: name] } ?? MissingBucket(name: name)
    }
    func copy(
        from source: ObjectKey, inBucket sourceBucket: String, to destination: ObjectKey, inBucket bucket: String,
        replacing: PutOptions?
    ) async throws -> ObjectInfo {
        let from = self.bucket(sourceBucket)
        let info = try await from.head(source)
        let bytes = try await from.get(source, range: nil, ifMatch: nil)
        return try await self.bucket(bucket).put(
            destination, payload: .bytes(bytes),
            options: replacing ?? PutOptions(contentType: info.contentType, metadata: info.metadata ?? [:]))
    }
    func accountInfo() async throws -> AccountInfo { AccountInfo() }
}

/// What a request to a bucket that does not exist gets: not found, for everything.
struct MissingBucket: ObjectStorage {
    let name: String
    var capabilities: StorageCapabilities { StorageCapabilities(directoryMarkerStyle: .trailingSlash) }
    var gone: StorageError { .notFound("bucket \(name)") }
    func list(prefix: String, delimiter: String?, continuation: String?, maxKeys: Int?) async throws -> ListPage {
        throw gone
    }
    func head(_ key: ObjectKey) async throws -> ObjectInfo { throw gone }
    func get(_ key: ObjectKey, range: ByteRange?, ifMatch: ETag?) async throws -> [UInt8] { throw gone }
    func put(_ key: ObjectKey, payload: Payload, options: PutOptions) async throws -> ObjectInfo { throw gone }
    func copy(from source: ObjectKey, to destination: ObjectKey, replacing metadata: PutOptions?) async throws
        -> ObjectInfo
    { throw gone }
    func delete(_ keys: [ObjectKey]) async throws { throw gone }
    func createMultipartUpload(_ key: ObjectKey, options: PutOptions) async throws -> MultipartUpload { throw gone }
    func uploadPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        throw gone
    }
    func completeMultipartUpload(_ upload: MultipartUpload, parts: [UploadedPart]) async throws -> ObjectInfo {
        throw gone
    }
    func abortMultipartUpload(_ upload: MultipartUpload) async throws { throw gone }
    func accountInfo() async throws -> AccountInfo { throw gone }
}

@Suite struct AccountStorageTests {
    @Test func bucketsAreTopLevelDirectories() async throws {
        let account = AccountStorage(MemoryBuckets())
        // mkdir at the root creates a bucket; its marker then exists.
        _ = try await account.put("photos/", payload: .bytes([]), options: PutOptions())
        _ = try await account.put("docs/", payload: .bytes([]), options: PutOptions())
        #expect(try await account.listAll(prefix: "", delimiter: "/").commonPrefixes == ["docs/", "photos/"])
        #expect(try await account.head("photos").size == 0)
        await #expect(throws: StorageError.notFound("bucket music")) { try await account.head("music/") }

        // Keys below the first segment live in that bucket.
        _ = try await account.put(
            "photos/2024/cat.jpg", payload: .bytes([1, 2, 3]), options: PutOptions(metadata: ["mtime": "5"]))
        let page = try await account.listAll(prefix: "photos/", delimiter: "/")
        #expect(page.commonPrefixes == ["photos/2024/"])
        #expect(
            try await account.listAll(prefix: "photos/2024/", delimiter: "/").objects.map(\.key) == [
                "photos/2024/cat.jpg"
            ])
        #expect(
            try await account.get("photos/2024/cat.jpg", range: ByteRange(offset: 1, length: 2), ifMatch: nil) == [
                2, 3,
            ])

        // Moving between buckets is a copy there and a delete here.
        let moved = try await account.copy(from: "photos/2024/cat.jpg", to: "docs/cat.jpg", replacing: nil)
        #expect(moved.key == "docs/cat.jpg")
        #expect(try await account.head("docs/cat.jpg").metadata?["mtime"] == "5")
        try await account.removeAfterMove(["photos/2024/cat.jpg"])

        // rmdir of a bucket: refused while it has objects, done once empty.
        await #expect(throws: StorageError.notEmpty("bucket docs")) { try await account.delete(["docs/"]) }
        try await account.delete(["docs/cat.jpg"])
        try await account.delete(["docs/"])
        #expect(try await account.listAll(prefix: "", delimiter: "/").commonPrefixes == ["photos/"])
        // Files cannot live at the account level, and buckets cannot be renamed.
        await #expect(throws: StorageError.self) {
            try await account.put("loose.txt", payload: .bytes([1]), options: PutOptions())
        }
        await #expect(throws: StorageError.self) {
            try await account.copy(from: "photos", to: "pictures", replacing: nil)
        }
    }

    /// Keys are split at the first "/" byte and grouped by bucket names' bytes: two spellings of
    /// one name (NFC, NFD) are two buckets, and a "/" that starts a combining sequence (one
    /// `Character` with the mark) still ends the bucket name.
    @Test func bucketNamesAreToldApartByTheirBytes() async throws {
        let account = AccountStorage(MemoryBuckets())
        let nfc = "caf\u{E9}"
        let nfd = "cafe\u{301}"
        _ = try await account.put(nfc + "/", payload: .bytes([]), options: PutOptions())
        _ = try await account.put(nfd + "/", payload: .bytes([]), options: PutOptions())
        let root = try await account.listAll(prefix: "", delimiter: "/")
        #expect(root.commonPrefixes.map { Array($0.utf8) } == [Array((nfd + "/").utf8), Array((nfc + "/").utf8)])
        _ = try await account.put(nfc + "/k", payload: .bytes([1]), options: PutOptions())
        _ = try await account.put(nfd + "/k", payload: .bytes([2]), options: PutOptions())
        #expect(try await account.get(nfc + "/k", range: nil, ifMatch: nil) == [1])
        #expect(try await account.get(nfd + "/k", range: nil, ifMatch: nil) == [2])
        // One delete of a key in each bucket deletes each in its own bucket.
        try await account.delete([nfc + "/k", nfd + "/k"])
        #expect(try await account.listAll(prefix: nfc + "/", delimiter: nil).objects.isEmpty)
        #expect(try await account.listAll(prefix: nfd + "/", delimiter: nil).objects.isEmpty)

        _ = try await account.put("b/", payload: .bytes([]), options: PutOptions())
        _ = try await account.put("b/\u{301}x", payload: .bytes([3]), options: PutOptions())
        let b = try await account.listAll(prefix: "b/", delimiter: "/")
        #expect(b.objects.map { Array($0.key.utf8) } == [Array("b/\u{301}x".utf8)])
        #expect(try await account.get("b/\u{301}x", range: nil, ifMatch: nil) == [3])
    }

    @Test func listingOfAMissingBucketIsEmpty() async throws {
        let account = AccountStorage(MemoryBuckets())
        #expect(try await account.listAll(prefix: "nothing/", delimiter: "/").objects.isEmpty)
    }
}
