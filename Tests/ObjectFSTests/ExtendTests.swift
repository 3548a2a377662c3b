// Extending a stored file without downloading it (Write/Upload.swift, "stored prefix"): the
// bytes already stored stay on the server and the upload copies them there; only what was
// written is sent.

import MemoryStorage
import ObjectStorage
import Testing

@testable import ObjectFS

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct ExtendTests {
    static let old = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }

    /// A store whose parts may be 8 bytes, a file of 1,000 bytes in it, and a filesystem that
    /// stores files above 64 bytes in parts of 16.
    static func harness(
        copiesParts: Bool = true, writeBack: Duration? = nil, journalIn dir: String? = nil, store: MemoryStorage? = nil
    ) async throws -> Harness {
        let store = store ?? MemoryStorage(pageSize: 5, minimumPartSize: 8, copiesParts: copiesParts)
        if (try? await store.head("big")) == nil {
            _ = try await store.put("big", payload: .bytes(old), options: PutOptions())
        }
        return try Harness(multipartThreshold: 64, partSize: 16, writeBack: writeBack, journalIn: dir, store: store)
    }

    func append(_ h: Harness, _ bytes: [UInt8], close: Bool = true) async throws -> UInt64 {
        let fh = try await h.fs.open(try await h.resolve("big").ino, flags: OpenFlags(posix: O_WRONLY | O_APPEND))
        _ = try await h.fs.write(fh, offset: Int64(Self.old.count), data: bytes)
        if close {
            try await h.fs.flush(fh)
            await h.fs.release(fh)
        }
        return fh
    }

    @Test func anAppendSendsOnlyTheAppendedBytesAndDownloadsNothing() async throws {
        let h = try await Self.harness()
        _ = try await append(h, b("appended"))
        #expect(h.storage.calls(.get) == 0)
        #expect(h.storage.bytesSent == 8)
        #expect(try await h.memory.get("big", range: nil, ifMatch: nil) == Self.old + b("appended"))
        #expect(try await h.readFile("big") == Self.old + b("appended"))
        #expect(try await h.resolve("big").size == 1008)
    }

    @Test func withoutPartCopiesTheFileIsDownloadedAndSentWhole() async throws {
        let h = try await Self.harness(copiesParts: false)
        _ = try await append(h, b("appended"))
        #expect(h.storage.bytesRead == 1000)
        #expect(h.storage.bytesSent == 1008)
        #expect(try await h.memory.get("big", range: nil, ifMatch: nil) == Self.old + b("appended"))
    }

    @Test func readsOfAFileBeingExtendedJoinTheStoredAndTheWrittenBytes() async throws {
        let h = try await Self.harness()
        let fh = try await h.fs.open(try await h.resolve("big").ino, flags: .readWrite)
        _ = try await h.fs.write(fh, offset: 1000, data: b("0123456789"))
        #expect(try await h.fs.read(fh, offset: 990, count: 20) == Array(Self.old[990...]) + b("0123456789"))
        #expect(try await h.fs.read(fh, offset: 0, count: 4) == Array(Self.old[0..<4]))
        #expect(try await h.fs.read(fh, offset: 1005, count: 100) == b("56789"))
        // A write into the stored bytes brings them here first.
        _ = try await h.fs.write(fh, offset: 500, data: b("XY"))
        #expect(h.storage.bytesRead >= 1000)
        var expected = Self.old + b("0123456789")
        expected[500] = UInt8(ascii: "X")
        expected[501] = UInt8(ascii: "Y")
        #expect(try await h.fs.read(fh, offset: 0, count: 2000) == expected)
        try await h.fs.flush(fh)
        await h.fs.release(fh)
        #expect(try await h.memory.get("big", range: nil, ifMatch: nil) == expected)
    }

    @Test func aTruncateKeepsWhatStaysOnTheServer() async throws {
        let h = try await Self.harness()
        _ = try await h.fs.setattr(try await h.resolve("big").ino, AttributeChanges(size: 600))
        #expect(h.storage.bytesSent == 0)
        #expect(h.storage.calls(.get) == 0)
        #expect(try await h.memory.get("big", range: nil, ifMatch: nil) == Array(Self.old[0..<600]))
        // Longer again: zeros after the stored bytes, still nothing downloaded.
        _ = try await h.fs.setattr(try await h.resolve("big").ino, AttributeChanges(size: 700))
        #expect(
            try await h.memory.get("big", range: nil, ifMatch: nil) == Array(Self.old[0..<600])
                + [UInt8](repeating: 0, count: 100))
        #expect(h.storage.calls(.get) == 0)
        // Below the smallest part: the few stored bytes are sent.
        _ = try await h.fs.setattr(try await h.resolve("big").ino, AttributeChanges(size: 5))
        #expect(try await h.memory.get("big", range: nil, ifMatch: nil) == Array(Self.old[0..<5]))
    }

    @Test func anOpenFileUnlinkedWhileExtendedStillReadsItsStoredBytes() async throws {
        let h = try await Self.harness()
        let fh = try await append(h, b("tail"), close: false)
        try await h.fs.unlink(parent: rootInode, name: "big")
        #expect(await h.keys() == [])
        #expect(try await h.fs.read(fh, offset: 0, count: 2000) == Self.old + b("tail"))
        await h.fs.release(fh)
    }

    @Test func anExtendedFileMovesWithARename() async throws {
        let h = try await Self.harness(writeBack: .seconds(3600))
        _ = try await append(h, b("tail"))
        try await h.fs.rename(parent: rootInode, name: "big", newParent: rootInode, newName: "moved")
        #expect(try await h.readFile("moved") == Self.old + b("tail"))
        try await h.fs.fsyncDirectory(rootInode)
        #expect(await h.keys() == ["moved"])
        #expect(try await h.memory.get("moved", range: nil, ifMatch: nil) == Self.old + b("tail"))
        #expect(h.storage.bytesSent == 4)
    }

    @Test func aLaterMountStoresAnAppendACrashedMountAcknowledged() async throws {
        let dir = uniqueStagingDirectory()
        let store = MemoryStorage(pageSize: 5, minimumPartSize: 8)
        let first = try await Self.harness(writeBack: .seconds(3600), journalIn: dir, store: store)
        _ = try await append(first, b("acknowledged"))
        let crashed = copyOfDirectory(dir)

        let second = try await Self.harness(journalIn: crashed, store: store)
        let recovery = await second.fs.recoverPending()
        #expect(recovery.keys == ["big"] && recovery.lost == [])
        #expect(try await second.readFile("big") == Self.old + b("acknowledged"))
        try await second.fs.fsyncDirectory(rootInode)
        #expect(try await store.get("big", range: nil, ifMatch: nil) == Self.old + b("acknowledged"))
        #expect(second.storage.bytesSent == 12)
    }

    @Test func anAppendToAFileAnotherClientReplacedFailsAndKeepsTheBytes() async throws {
        let h = try await Self.harness(writeBack: .seconds(3600))
        _ = try await append(h, b("ours"))
        try await h.put("big", "theirs")
        await expectErrno(EIO) { try await h.fs.fsyncDirectory(rootInode) }
        // Theirs stays; ours is not stored over it with a hole.
        #expect(try await h.memory.get("big", range: nil, ifMatch: nil) == b("theirs"))
        #expect(await h.fs.pendingUploads == 1)
    }

    @Test func aRecordWithAStoredPrefixSurvivesItsEncoding() {
        var entry = Journal.Entry(
            file: "staged-1-2-3", key: "k", size: 1008, contentType: nil, metadata: ["mode": "33188"])
        entry.storedPrefix = Journal.StoredPrefix(length: 1000, etag: "\"abc=,def\"-2", objectSize: 1000)
        #expect(Journal.decode(Journal.encode(.put(entry))) == [.put(entry)])
    }
}
