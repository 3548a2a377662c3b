// The inode table forgets what the kernel forgot: a `find` over a tree, then the kernel's
// forgets, leaves the table as it was; what this mount still needs stays.

import MemoryStorage
import ObjectFS
import ObjectStorage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct ForgetTests {
    /// What a `find` does through FUSE: every directory listed, every entry looked up (as
    /// readdirplus counts it); returns each path with its inode.
    func find(_ h: Harness, _ ino: InodeNumber = rootInode, _ path: String = "") async throws
        -> [(path: String, ino: InodeNumber)]
    {
        var found: [(path: String, ino: InodeNumber)] = []
        for entry in try await h.fs.list(ino) {
            let a = try await h.fs.lookup(parent: ino, name: entry.name)
            found.append((path + entry.name, a.ino))
            if a.kind == .directory { found += try await find(h, a.ino, path + entry.name + "/") }
        }
        return found
    }

    @Test func afterAFindAndTheKernelsForgetsTheTableIsBackToTheRoot() async throws {
        let h = try Harness(ttl: 10)
        for key in ["d1/a", "d1/b", "d2/e/f", "d2/e/g", "top"] { try await h.put(key, key) }
        let baseline = await h.fs.inodeCount
        let first = try await find(h)
        #expect(first.map(\.path).sorted() == ["d1", "d1/a", "d1/b", "d2", "d2/e", "d2/e/f", "d2/e/g", "top"])
        #expect(await h.fs.inodeCount == baseline + 8)
        // Children before their directories, as the kernel forgets them.
        for (_, ino) in first.reversed() { await h.fs.forget(ino) }
        #expect(await h.fs.inodeCount == baseline)
        // Within the TTL the names are still found (asked again), under new inode numbers, and
        // the bytes are the same.
        let second = try await find(h)
        #expect(second.map(\.path).sorted() == first.map(\.path).sorted())
        #expect(Set(second.map(\.ino)).isDisjoint(with: first.map(\.ino)))
        #expect(try await h.readFile("d2/e/g") == b("d2/e/g"))
        // A directory forgotten first takes what is under it along.
        await h.fs.forget(try await h.resolve("d2").ino)
        #expect(await h.fs.inodeCount == baseline + 8 - 4)
    }

    @Test func whatThisMountStillNeedsIsNotForgotten() async throws {
        let h = try Harness(ttl: 10, writeBack: .seconds(3600))
        try await h.put("d/open", "o")
        try await h.put("d/plain", "p")
        let open = try await h.resolve("d/open")
        let fh = try await h.fs.open(open.ino, flags: .readOnly)
        // Written and closed, not stored yet (the upload waits an hour).
        let unsaved = try await h.writeFile("d/unsaved", b("u"))
        let plain = try await h.resolve("d/plain")
        let d = try await h.resolve("d")
        let count = await h.fs.inodeCount
        for ino in [open.ino, unsaved.ino, d.ino] { await h.fs.forget(ino) }
        #expect(await h.fs.inodeCount == count)
        #expect(try await h.fs.getattr(open.ino).size == 1)
        #expect(try await h.fs.getattr(unsaved.ino).size == 1)
        // Not while its directory is being read (the listing may hand its inode out again).
        let dh = try await h.fs.opendir(d.ino)
        await h.fs.forget(plain.ino)
        #expect(await h.fs.inodeCount == count)
        await h.fs.releasedir(dh)
        // A plain file goes; its open sibling and their directory stay.
        await h.fs.forget(plain.ino)
        #expect(await h.fs.inodeCount == count - 1)
        await expectErrno(ENOENT) { _ = try await h.fs.getattr(plain.ino) }
        #expect(try await h.resolve("d/plain").ino != plain.ino)
        await h.fs.release(fh)
        #expect(await h.fs.flushAll().isEmpty)
        #expect(try await h.readFile("d/unsaved") == b("u"))
    }
}

/// What a node keeps of its server version (without the key, with shared content types) is
/// what a later store of the object carries over.
@Suite struct StoredVersionTests {
    @Test func aChmodAndARenameKeepEachObjectsContentType() async throws {
        let h = try Harness(ttl: 10)
        let types = ["image/jpeg", "text/plain; charset=utf-8", "application/octet-stream"]
        for (i, type) in types.enumerated() { try await h.put("f\(i)", "\(i)", contentType: type) }
        for i in types.indices {
            let a = try await h.resolve("f\(i)")
            _ = try await h.fs.setattr(a.ino, AttributeChanges(mode: 0o600))
            try await h.fs.rename(parent: rootInode, name: "f\(i)", newParent: rootInode, newName: "g\(i)")
        }
        for (i, type) in types.enumerated() {
            let info = try await h.memory.head("g\(i)")
            #expect(info.contentType == type)
            #expect(info.metadata?["mode"].flatMap { UInt32($0) }.map { $0 & 0o7777 } == 0o600)
            #expect(try await h.readFile("g\(i)") == b("\(i)"))
        }
    }
}
