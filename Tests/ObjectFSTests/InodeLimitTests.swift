// The inode table stays within `inodeLimit` whatever the tree walked: idle nodes go (those the
// kernel holds once it forgets them), and every name is still found, listed and read.

import MemoryStorage
import ObjectFS
import ObjectStorage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct InodeLimitTests {
    static let names = (0..<300).map { "f" + String(1000 + $0) }

    func filled(_ limit: Int, kernel: KernelLookups? = nil, writeBack: Duration? = nil) async throws -> Harness {
        let h = try Harness(ttl: 10, writeBack: writeBack, inodeLimit: limit, kernel: kernel)
        for name in Self.names { try await h.put("d/" + name, name) }
        return h
    }

    @Test func aListingLargerThanTheLimitKeepsTheTableWithinItAndEveryNameIsFound() async throws {
        let h = try await filled(100)
        let d = try await h.resolve("d")
        #expect(try await h.fs.list(d.ino).map(\.name) == Self.names)
        #expect(await h.fs.inodeCount <= 100)
        // The listing that lost names on the way is not taken as complete: the next one asks the
        // server again and shows them all.
        #expect(try await h.fs.list(d.ino).map(\.name) == Self.names)
        for name in Self.names {
            #expect(try await h.fs.lookup(parent: d.ino, name: name).size == Int64(name.utf8.count))
            #expect(await h.fs.inodeCount <= 100)
        }
        #expect(try await h.readFile("d/f1000") == b("f1000"))
        #expect(try await h.readFile("d/f1299") == b("f1299"))
        await expectErrno(ENOENT) { _ = try await h.fs.lookup(parent: d.ino, name: "f0999") }
    }

    @Test func aNameDroppedBeforeTheKernelHeldItIsLookedUpWithItsHeadAlone() async throws {
        // `find` or `ls -l` of a directory larger than the limit: the whole listing, then a
        // lookup of every name, half of them dropped meanwhile.
        let h = try await filled(150)
        let d = try await h.resolve("d")
        _ = try await h.fs.list(d.ino)
        let (heads, lists) = (h.storage.calls(.head), h.storage.calls(.list))
        for name in Self.names {
            #expect(try await h.fs.lookup(parent: d.ino, name: name).size == Int64(name.utf8.count))
        }
        #expect(h.storage.calls(.list) == lists)
        #expect(h.storage.calls(.head) - heads >= 150)
        #expect(await h.fs.inodeCount <= 150)
        // A name the listing did not show is asked in full.
        await expectErrno(ENOENT) { _ = try await h.fs.lookup(parent: d.ino, name: "f0999") }
        #expect(h.storage.calls(.list) == lists + 1)
    }

    @Test func inodesTheKernelHoldsGoOnceItForgetsTheirNames() async throws {
        let kernel = KernelLookups()
        let h = try await filled(100, kernel: kernel)
        let d = try await h.resolve("d")
        kernel.add(d.ino)
        // A find: the directory listed, every entry looked up (and held by the kernel).
        var inoOf: [String: InodeNumber] = [:]
        for entry in try await h.fs.list(d.ino) {
            let a = try await h.fs.lookup(parent: d.ino, name: entry.name)
            kernel.add(a.ino)
            inoOf[entry.name] = a.ino
        }
        #expect(inoOf.count == 300)
        // Held inodes are not dropped behind the kernel's back: it is asked to forget the names.
        #expect(await h.fs.inodeCount > 100)
        let asked = h.invalidated.all.filter { $0.0 == d.ino }.map(\.1)
        #expect(asked.count >= 200)
        #expect(asked.contains("f1000"))
        #expect(!asked.contains("f1299"))
        // The kernel forgets them (FORGET at a lookup count of 0): then they go.
        for name in asked {
            kernel.remove(inoOf[name]!)
            await h.fs.forget(inoOf[name]!)
        }
        #expect(await h.fs.inodeCount <= 100)
        // What the kernel still holds is still served under its inode number.
        #expect(try await h.fs.getattr(inoOf["f1299"]!).size == 5)
        let again = try await h.fs.lookup(parent: d.ino, name: "f1000")
        #expect(again.ino != inoOf["f1000"])
        #expect(try await h.readFile("d/f1000") == b("f1000"))
    }

    @Test func aDirectoryWalkedAndLeftGoesWholeWithOneRequestToTheKernel() async throws {
        // `find` over 30 directories of 10 files, each file looked up (and held by the kernel).
        let kernel = KernelLookups()
        let h = try Harness(ttl: 10, inodeLimit: 160, kernel: kernel)
        let dirs = (0..<30).map { "d" + String(10 + $0) }
        for dir in dirs { for i in 0..<10 { try await h.put("\(dir)/f\(i)", "\(dir)/\(i)") } }
        var inoOf: [String: InodeNumber] = [:]
        for dir in dirs {
            let d = try await h.fs.lookup(parent: rootInode, name: dir)
            kernel.add(d.ino)
            inoOf[dir] = d.ino
            for entry in try await h.fs.list(d.ino) {
                let a = try await h.fs.lookup(parent: d.ino, name: entry.name)
                kernel.add(a.ino)
                inoOf["\(dir)/\(entry.name)"] = a.ino
            }
        }
        // The directories left first are asked to go whole; no file of theirs one by one.
        let asked = h.invalidated.all
        let whole = asked.filter { $0.0 == rootInode }.map(\.1)
        #expect(whole.count >= 10)
        #expect(whole.contains("d10"))
        #expect(!asked.contains { $0.0 == inoOf["d10"] })
        #expect(!whole.contains("d39"))
        // The kernel forgets each such directory and what it held under it.
        for dir in whole {
            for i in 0..<10 {
                kernel.remove(inoOf["\(dir)/f\(i)"]!)
                await h.fs.forget(inoOf["\(dir)/f\(i)"]!)
            }
            kernel.remove(inoOf[dir]!)
            await h.fs.forget(inoOf[dir]!)
        }
        #expect(await h.fs.inodeCount <= 160)
        // Everything is found and read again; what the kernel holds keeps its inode.
        #expect(try await h.readFile("d10/f3") == b("d10/3"))
        #expect(try await h.fs.list(try await h.resolve("d10").ino).count == 10)
        #expect(try await h.fs.getattr(inoOf["d39/f9"]!).size == 5)
    }

    @Test func whatThisMountNeedsStaysPastTheLimit() async throws {
        let h = try await filled(100, writeBack: .seconds(3600))
        let open = try await h.resolve("d/f1000")
        let fh = try await h.fs.open(open.ino, flags: .readOnly)
        // Written and closed, not stored yet (the upload waits an hour).
        let unsaved = try await h.writeFile("d/unsaved", b("u"))
        let d = try await h.resolve("d")
        _ = try await h.fs.list(d.ino)
        #expect(await h.fs.inodeCount <= 100)
        #expect(try await h.fs.getattr(open.ino).size == 5)
        #expect(try await h.fs.getattr(unsaved.ino).size == 1)
        #expect(try await h.fs.read(fh, offset: 0, count: 10) == b("f1000"))
        #expect(try await h.fs.list(d.ino).map(\.name) == Self.names + ["unsaved"])
        await h.fs.release(fh)
        #expect(await h.fs.flushAll().isEmpty)
        #expect(try await h.readFile("d/unsaved") == b("u"))
    }

    @Test func aHandleNeverGivesOutATypedEntryWhoseInodeWent() async throws {
        let kernel = KernelLookups()
        let h = try await filled(100, kernel: kernel)
        try await h.put("e/x", "x")
        let e = try await h.resolve("e")
        let d = try await h.resolve("d")
        kernel.add(e.ino)
        kernel.add(d.ino)
        // The first page of `d` waits in its handle while another listing fills the table.
        let dh = try await h.fs.opendir(d.ino)
        _ = try await h.fs.list(d.ino)
        _ = try await h.fs.list(e.ino)
        var seen: [String] = []
        while true {
            let batch = try await h.fs.readdir(dh, offset: 2 + seen.count)
            if batch.isEmpty { break }
            for entry in batch {
                // With a type, its inode is live; a name only is looked up first.
                if entry.kindKnown { #expect(try await h.fs.getattr(entry.ino).size == 5) }
                seen.append(entry.name)
            }
        }
        await h.fs.releasedir(dh)
        #expect(seen == Self.names)
        #expect(await h.fs.inodeCount <= 100)
    }
}
