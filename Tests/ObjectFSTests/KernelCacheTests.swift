// What the kernel may cache: every answer says how much of the metadata TTL is left for it, and
// names the filesystem changes by itself (gone on the server, moved aside by a conflict) are
// taken back from the kernel at once.

import MemoryStorage
import ObjectFS
import ObjectStorage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct KernelCacheTests {
    @Test func anAnswerIsTrustedForTheRestOfTheTTLSinceTheServerWasAsked() async throws {
        let h = try Harness(ttl: 10)
        try await h.put("f", "x")
        #expect(try await h.resolve("f").trustedFor == 10)
        h.clock.advance(seconds: 4)
        #expect(try await h.resolve("f").trustedFor == 6)
        #expect(try await h.fs.getattr(try await h.resolve("f").ino).trustedFor == 6)
        // Past the TTL the server is asked again, and the whole TTL starts over.
        h.clock.advance(seconds: 7)
        let heads = h.storage.calls(.head)
        #expect(try await h.resolve("f").trustedFor == 10)
        #expect(h.storage.calls(.head) > heads)
        // A listing's snapshot ages with its handle.
        let fh = try await h.fs.opendir(rootInode)
        h.clock.advance(seconds: 3)
        let entry = try await h.fs.readdir(fh, offset: 2).first { $0.name == "f" }
        #expect(entry?.attributes.trustedFor == 7)
        await h.fs.releasedir(fh)
    }

    @Test func aFileSeenBeforeIsCheckedAgainWithItsHeadAloneAndANameThatIsGoneInFull() async throws {
        let h = try Harness(ttl: 10)
        try await h.put("f", "x")
        try await h.put("g", "y")
        _ = try await h.resolve("f")
        _ = try await h.resolve("g")
        h.expireCaches()
        let (heads, lists) = (h.storage.calls(.head), h.storage.calls(.list))
        #expect(try await h.resolve("f").size == 1)
        #expect(h.storage.calls(.head) == heads + 1)
        #expect(h.storage.calls(.list) == lists)
        // Gone as a file and now a directory: the HEAD finds nothing, the listing says what it is.
        try await h.memory.delete(["g"])
        try await h.put("g/inner", "z")
        h.expireCaches()
        #expect(try await h.resolve("g").kind == .directory)
        #expect(h.storage.calls(.list) == lists + 1)
        #expect(try await h.readFile("g/inner") == b("z"))
        // Gone altogether.
        try await h.memory.delete(["f"])
        h.expireCaches()
        await expectErrno(ENOENT) { _ = try await h.resolve("f") }
    }

    @Test func aFileThisMountHoldsIsTrustedForTheWholeTTLAndTTLZeroForNothing() async throws {
        let h = try Harness(ttl: 10)
        let (a, fh) = try await h.fs.create(
            parent: rootInode, name: "new", mode: 0o644, flags: OpenFlags(posix: O_WRONLY | O_CREAT))
        #expect(a.trustedFor == 10)
        h.clock.advance(seconds: 30)
        #expect(try await h.fs.getattr(a.ino).trustedFor == 10)  // open: only this mount changes it
        await h.fs.release(fh)
        let zero = try Harness(ttl: 0)
        try await zero.put("f", "x")
        #expect(try await zero.resolve("f").trustedFor == 0)
    }

    @Test func aDirectoryIsTrustedWhileItsParentsListingIsFreshOrAfterThisMountMadeIt() async throws {
        let h = try Harness(ttl: 10)
        try await h.put("listed/f", "x")
        #expect(try await h.names("").contains("listed"))  // the root's listing: fresh for 10 s
        h.clock.advance(seconds: 3)
        #expect(try await h.resolve("listed").trustedFor == 7)
        let made = try await h.fs.mkdir(parent: rootInode, name: "made", mode: 0o755)
        #expect(made.trustedFor == 10)
        h.clock.advance(seconds: 4)
        #expect(try await h.fs.getattr(made.ino).trustedFor == 6)
    }

    @Test func readdirAnswersInBatchesThatTogetherHoldEveryEntryOnce() async throws {
        let memory = MemoryStorage()
        for i in 0..<2500 { _ = try await memory.put("d/f\(i)", payload: .bytes([1]), options: PutOptions()) }
        let h = try Harness(store: memory)
        let d = try await h.resolve("d")
        let fh = try await h.fs.opendir(d.ino)
        var names: [String] = []
        while true {
            let batch = try await h.fs.readdir(fh, offset: names.count)
            if batch.isEmpty { break }
            #expect(batch.count <= ObjectFS.readdirBatch)
            names += batch.map(\.name)
        }
        await h.fs.releasedir(fh)
        #expect(names.count == 2502 && Set(names).count == 2502)  // with "." and ".."
        #expect(try await h.fs.list(d.ino).count == 2500)
    }

    @Test func aNameFoundGoneOnTheServerIsTakenBackFromTheKernel() async throws {
        let h = try Harness(ttl: 10)
        try await h.put("d/listed", "x")
        try await h.put("d/looked-up", "x")
        try await h.put("stat", "x")
        let d = try await h.resolve("d")
        #expect(try await h.fs.list(d.ino).map(\.name).sorted() == ["listed", "looked-up"])
        let stat = try await h.resolve("stat")
        try await h.memory.delete(["d/listed", "d/looked-up", "stat"])
        h.expireCaches()
        #expect(h.invalidated.count == 0)
        // A listing without the name, a lookup and a stat that find it gone.
        #expect(try await h.fs.list(d.ino).isEmpty)
        #expect(h.invalidated.contains(d.ino, "listed") && h.invalidated.contains(d.ino, "looked-up"))
        await expectErrno(ENOENT) { _ = try await h.fs.lookup(parent: rootInode, name: "nothing-here") }
        _ = try? await h.fs.getattr(stat.ino)
        #expect(h.invalidated.contains(rootInode, "stat"))
        // Local changes go through the kernel, which updates its own entries: nothing to take back.
        let before = h.invalidated.count
        try await h.writeFile("mine", b("1"))
        try await h.fs.rename(parent: rootInode, name: "mine", newParent: rootInode, newName: "moved")
        try await h.fs.unlink(parent: rootInode, name: "moved")
        #expect(h.invalidated.count == before)
    }
}

/// readdir serves a listing page by page: the first entries go out before the next page is
/// asked, and a handle holds one page.
@Suite struct StreamingListingTests {
    @Test func theFirstEntriesAreReturnedBeforeTheSecondPageIsFetched() async throws {
        let h = try Harness(ttl: 10)  // pages of 5
        for i in 0..<12 { try await h.put("d/f\(String(format: "%02d", i))", "\(i)") }
        let d = try await h.resolve("d")
        let lists = h.storage.calls(.list)
        // The server answers the first page and holds the second.
        let first = h.storage.holdNextReply(of: .list)
        let second = h.storage.holdNextReply(of: .list)
        first.release()
        let fh = try await h.fs.opendir(d.ino)
        #expect(try await h.fs.readdir(fh, offset: 0).map(\.name) == [".", "..", "f00", "f01", "f02", "f03", "f04"])
        // The second page was asked already (one page ahead); its entries wait for it.
        await second.arrived()
        let rest = Task { try await h.fs.readdir(fh, offset: 7) }
        try await Task.sleep(for: .milliseconds(50))
        #expect(h.storage.calls(.list) == lists + 2)
        second.release()
        #expect(try await rest.value.map(\.name) == ["f05", "f06", "f07", "f08", "f09"])
        // A rewind lists again from the start; the end is empty.
        #expect(try await h.fs.readdir(fh, offset: 3).first?.name == "f01")
        var names: [String] = []
        while true {
            let batch = try await h.fs.readdir(fh, offset: 3 + names.count)
            if batch.isEmpty { break }
            names += batch.map(\.name)
        }
        #expect(names == (1..<12).map { "f" + String(format: "%02d", $0) })
        await h.fs.releasedir(fh)
    }

    @Test func aNameGoneFromTheListingGoesAndOneNotStoredYetComesLast() async throws {
        let h = try Harness(ttl: 10, writeBack: .seconds(3600))
        for i in 0..<7 { try await h.put("d/f\(i)", "\(i)") }
        #expect(try await h.names("d").count == 7)
        _ = try await h.memory.delete(["d/f3"])
        try await h.writeFile("d/a-new", b("new"))  // not stored: only this mount has it
        h.expireCaches()
        let names = try await h.names("d")
        #expect(names == ["f0", "f1", "f2", "f4", "f5", "f6", "a-new"])
        await expectErrno(ENOENT) { _ = try await h.resolve("d/f3") }
        #expect(await h.fs.flushAll().isEmpty)
    }
}
