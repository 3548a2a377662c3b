import MemoryStorage
import ObjectFS
import ObjectStorage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct SymlinkTests {
    @Test func aSymlinkIsAnObjectWhoseBodyIsTheTarget() async throws {
        let h = try Harness()
        let a = try await h.fs.symlink(parent: rootInode, name: "link", target: "../some/where")
        #expect(a.kind == .symlink && a.size == 13 && a.mode == 0o777)
        #expect(try await h.memory.get("link", range: nil, ifMatch: nil) == b("../some/where"))
        let info = try await h.memory.head("link")
        // s3fs's convention: mode metadata with S_IFLNK.
        #expect(info.metadata?["mode"] == String(0o120777))
        #expect(info.contentType == "inode/symlink")
        #expect(try await h.fs.readlink(a.ino) == "../some/where")
        h.expireCaches()
        let again = try await h.resolve("link")
        #expect(again.kind == .symlink)
        #expect(try await h.fs.readlink(again.ino) == "../some/where")
    }

    @Test func s3fsSymlinksAreSymlinksEvenWhenTheListingCannotTell() async throws {
        let memory = MemoryStorage()
        // What s3fs writes: the target as body, mode S_IFLNK|0777, no particular content type.
        _ = try await memory.put(
            "d/l", payload: .bytes(b("/etc/hostname")), options: PutOptions(metadata: ["mode": "41471"]))
        _ = try await memory.put("d/small", payload: .bytes(b("hello")), options: PutOptions())
        let fs = try ObjectFS(
            storage: MetadataFreeListings(base: memory, s3Like: true),
            configuration: ObjectFSConfiguration(stagingDirectory: uniqueStagingDirectory()))
        let d = try await fs.lookup(parent: rootInode, name: "d")
        let entries = try await fs.list(d.ino)
        // Small objects of an S3 listing: the kernel must look them up to learn their type.
        #expect(entries.map(\.kindKnown) == [false, false])
        let l = try await fs.lookup(parent: d.ino, name: "l")
        #expect(l.kind == .symlink)
        #expect(try await fs.readlink(l.ino) == "/etc/hostname")
        #expect(try await fs.lookup(parent: d.ino, name: "small").kind == .file)
        #expect(try await fs.list(d.ino).map(\.kindKnown) == [true, true])
    }

    @Test func swiftListingsTellSymlinksByContentType() async throws {
        let h = try Harness(markerStyle: .applicationDirectory)
        _ = try await h.fs.symlink(parent: rootInode, name: "l", target: "t")
        let fs = try ObjectFS(
            storage: MetadataFreeListings(base: h.memory),
            configuration: ObjectFSConfiguration(stagingDirectory: uniqueStagingDirectory()))
        let entries = try await fs.list(rootInode)
        #expect(entries.map(\.attributes.kind) == [.symlink])
        #expect(entries.map(\.kindKnown) == [true])
    }

    @Test func renameUnlinkAndTimesOfASymlink() async throws {
        let h = try Harness()
        try await h.mkdir("d")
        let l = try await h.fs.symlink(parent: rootInode, name: "l", target: "target")
        let d = try await h.resolve("d")
        try await h.fs.rename(parent: rootInode, name: "l", newParent: d.ino, newName: "m")
        #expect(await h.keys() == ["d/", "d/m"])
        #expect(try await h.fs.readlink(l.ino) == "target")
        // chmod of a symlink changes nothing (Linux symlinks are always 0777); utimes with
        // AT_SYMLINK_NOFOLLOW stores the symlink's own mtime.
        let t = Timestamp(seconds: 1_234_567_890)
        let after = try await h.fs.setattr(l.ino, AttributeChanges(mode: 0o600, mtime: .set(t)))
        #expect(after.mode == 0o777 && after.mtime == t && after.kind == .symlink)
        let info = try await h.memory.head("d/m")
        #expect(info.metadata?["mode"] == String(0o120777))
        #expect(info.metadata?["mtime"].flatMap(Timestamp.init(metadataValue:)) == t)
        try await h.fs.unlink(parent: d.ino, name: "m")
        #expect(await h.keys() == ["d/"])
    }

    @Test func symlinkErrors() async throws {
        let h = try Harness()
        try await h.writeFile("f", b("x"))
        await expectErrno(EEXIST) { _ = try await h.fs.symlink(parent: rootInode, name: "f", target: "t") }
        let long = String(repeating: "a", count: 4096)
        await expectErrno(ENAMETOOLONG) { _ = try await h.fs.symlink(parent: rootInode, name: "l", target: long) }
        let f = try await h.resolve("f")
        await expectErrno(EINVAL) { _ = try await h.fs.readlink(f.ino) }
        let l = try await h.fs.symlink(parent: rootInode, name: "l", target: "f")
        await expectErrno(ELOOP) { _ = try await h.fs.open(l.ino, flags: .readOnly) }
    }
}

@Suite struct UnicodeAndMarkerTests {
    /// `caf\u{e9}` (NFC) and `cafe\u{301}` (NFD) are two objects: two entries, each with its
    /// own bytes, and unlinking one leaves the other.
    @Test func namesAreComparedAsBytes() async throws {
        let h = try Harness()
        let nfc = "caf\u{e9}"
        let nfd = "cafe\u{301}"
        try await h.put("nf/" + nfc, "composed")
        try await h.put("nf/" + nfd, "decomposed")
        #expect(try await h.names("nf").count == 2)
        #expect(try await h.readFile("nf/" + nfc) == b("composed"))
        #expect(try await h.readFile("nf/" + nfd) == b("decomposed"))
        let dir = try await h.resolve("nf")
        try await h.fs.unlink(parent: dir.ino, name: nfd)
        #expect(await h.keys() == ["nf/" + nfc])
        #expect(try await h.readFile("nf/" + nfc) == b("composed"))
        // Created through the mount: two inodes, two objects.
        try await h.writeFile("new-" + nfc, b("1"))
        try await h.writeFile("new-" + nfd, b("2"))
        #expect(try await h.resolve("new-" + nfc).ino != (try await h.resolve("new-" + nfd)).ino)
        #expect(try await h.readFile("new-" + nfd) == b("2"))
        #expect(await h.keys().filter { $0.hasPrefix("new-") }.count == 2)
    }

    @Test func aSwiftStyleMarkerListedWithoutContentTypeIsADirectory() async throws {
        let memory = MemoryStorage()
        _ = try await memory.put("dir", payload: .bytes([]), options: PutOptions(contentType: "application/directory"))
        let fs = try ObjectFS(
            storage: MetadataFreeListings(base: memory, s3Like: true),
            configuration: ObjectFSConfiguration(stagingDirectory: uniqueStagingDirectory()))
        let entries = try await fs.list(rootInode)
        #expect(entries.map(\.kindKnown) == [false])
        // Lookup and the next listing agree: a directory, and files can be made in it.
        let dir = try await fs.lookup(parent: rootInode, name: "dir")
        #expect(dir.kind == .directory)
        #expect(try await fs.list(rootInode).map(\.attributes.kind) == [.directory])
        let (_, fh) = try await fs.create(parent: dir.ino, name: "f", mode: 0o644, flags: .writeOnly)
        try await fs.flush(fh)
        await fs.release(fh)
        #expect(await memory.snapshot().map(\.key) == ["dir", "dir/f"])
    }
}

@Suite struct ExtendedAttributeTests {
    @Test func userAttributesAreUserMetadata() async throws {
        let h = try Harness()
        try await h.writeFile("f", b("data"))
        let f = try await h.resolve("f")
        try await h.fs.changeExtendedAttribute(f.ino, name: "user.color", value: b("blue"))
        try await h.fs.changeExtendedAttribute(f.ino, name: "user.Mixed_Case", value: [0, 1, 255])
        let info = try await h.memory.head("f")
        #expect(info.metadata?["color"] == "blue")
        #expect(info.metadata?["mode"] == String(0o100644))
        // Names that are not lower-case header tokens are encoded reversibly.
        #expect(info.metadata?.keys.contains { $0.hasPrefix("xattr-") } == true)
        h.expireCaches()
        let again = try await h.resolve("f")
        #expect(try await h.fs.extendedAttributeNames(again.ino) == ["user.Mixed_Case", "user.color"])
        #expect(try await h.fs.extendedAttribute(again.ino, name: "user.color") == b("blue"))
        #expect(try await h.fs.extendedAttribute(again.ino, name: "user.Mixed_Case") == [0, 1, 255])
        try await h.fs.changeExtendedAttribute(again.ino, name: "user.color", value: nil)
        #expect(try await h.memory.head("f").metadata?["color"] == nil)
        await expectErrno(ENODATA) { _ = try await h.fs.extendedAttribute(again.ino, name: "user.color") }
        await expectErrno(ENODATA) { try await h.fs.changeExtendedAttribute(again.ino, name: "user.color", value: nil) }
        // The file's bytes are untouched by metadata updates.
        #expect(try await h.readFile("f") == b("data"))
    }

    @Test func attributesRideAlongWithAnUploadAndSurviveRenameAndRewrite() async throws {
        let h = try Harness()
        let (_, fh) = try await h.fs.create(parent: rootInode, name: "new", mode: 0o600, flags: .writeOnly)
        _ = try await h.fs.write(fh, offset: 0, data: b("abc"))
        let a = try await h.resolve("new")
        let putsBefore = h.storage.calls(.put)
        try await h.fs.changeExtendedAttribute(a.ino, name: "user.origin", value: b("camera"))
        #expect(h.storage.calls(.put) == putsBefore && h.storage.calls(.copy) == 0)
        try await h.fs.flush(fh)
        await h.fs.release(fh)
        #expect(try await h.memory.head("new").metadata?["origin"] == "camera")
        try await h.fs.rename(parent: rootInode, name: "new", newParent: rootInode, newName: "moved")
        #expect(try await h.memory.head("moved").metadata?["origin"] == "camera")
        // Rewriting the file keeps its attributes.
        try await h.writeFile("moved", b("new bytes"))
        #expect(try await h.memory.head("moved").metadata?["origin"] == "camera")
    }

    @Test func flagsNamespacesAndLimits() async throws {
        let h = try Harness()
        try await h.writeFile("f", b("x"))
        let f = try await h.resolve("f")
        try await h.fs.changeExtendedAttribute(f.ino, name: "user.a", value: b("1"), flags: 1)
        await expectErrno(EEXIST) {
            try await h.fs.changeExtendedAttribute(f.ino, name: "user.a", value: b("2"), flags: 1)
        }
        await expectErrno(ENODATA) {
            try await h.fs.changeExtendedAttribute(f.ino, name: "user.b", value: b("2"), flags: 2)
        }
        await expectErrno(ENOTSUP) {
            try await h.fs.changeExtendedAttribute(f.ino, name: "security.selinux", value: b("x"))
        }
        await expectErrno(ENOTSUP) { try await h.fs.changeExtendedAttribute(f.ino, name: "trusted.x", value: b("x")) }
        // Reading them is ENOTSUP too (the namespace is not supported, on files and directories
        // alike): `ls -l` stops asking after the first file.
        let d = try await h.fs.mkdir(parent: rootInode, name: "d", mode: 0o755)
        for name in ["security.selinux", "system.posix_acl_access", "trusted.x"] {
            for ino in [f.ino, d.ino] {
                await expectErrno(ENOTSUP) { _ = try await h.fs.extendedAttribute(ino, name: name) }
            }
        }
        await expectErrno(ENODATA) { _ = try await h.fs.extendedAttribute(d.ino, name: "user.a") }
        // S3's 2 KB: over it, ENOSPC, and nothing is stored.
        await expectErrno(ENOSPC) {
            try await h.fs.changeExtendedAttribute(f.ino, name: "user.big", value: Array(repeating: 65, count: 2100))
        }
        #expect(try await h.memory.head("f").metadata?["big"] == nil)
        #expect(try await h.fs.extendedAttribute(f.ino, name: "user.a") == b("1"))
        let l = try await h.fs.symlink(parent: rootInode, name: "l", target: "f")
        await expectErrno(EPERM) { try await h.fs.changeExtendedAttribute(l.ino, name: "user.a", value: b("1")) }
    }

    @Test func theEncodingRoundTrips() {
        for name in ["color", "Color", "a_b", "xdg.origin.url", "mtime", "xattr-foo", "é", "-x", "a b"] {
            let stored = UserMetadata.metadataName(for: name)
            #expect(
                stored.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 46 })
            #expect(UserMetadata.attributeName(for: stored) == name, "\(name) -> \(stored)")
        }
        #expect(UserMetadata.metadataName(for: "xdg.origin.url") == "xdg.origin.url")
        #expect(UserMetadata.attributeName(for: "mtime") == nil)
        for value: [UInt8] in [[], b("plain"), b(" padded"), b("base64:x"), [0, 255], b("café")] {
            #expect(UserMetadata.decodeValue(UserMetadata.encodeValue(value)) == value)
        }
        #expect(UserMetadata.encodeValue(b("plain")) == "plain")
        // The example of doc/SEMANTICS.md.
        #expect(UserMetadata.metadataName(for: "Color") == "xattr-inxwy33s")
    }
}

@Suite struct DirectoryMetadataTests {
    @Test(arguments: [DirectoryMarkerStyle.trailingSlash, .applicationDirectory])
    func modeMtimeAndOwnerAreKeptOnTheMarker(style: DirectoryMarkerStyle) async throws {
        let h = try Harness(markerStyle: style)
        try await h.mkdir("d")
        try await h.put("implicit/f")
        let t = Timestamp(seconds: 1_111_111_111)
        for name in ["d", "implicit"] {
            let a = try await h.resolve(name)
            _ = try await h.fs.setattr(a.ino, AttributeChanges(mode: 0o701, uid: 42, mtime: .set(t)))
        }
        let marker = style == .trailingSlash ? "d/" : "d"
        #expect(try await h.memory.head(marker).metadata?["mode"] == String(0o40701))
        // An implicit directory gets a marker when its attributes change.
        #expect(try await h.memory.head(style == .trailingSlash ? "implicit/" : "implicit").metadata?["uid"] == "42")
        // A new filesystem over the same store (a remount) shows them, listed or looked up.
        let fs = try ObjectFS(
            storage: MetadataFreeListings(base: h.memory, s3Like: style == .trailingSlash),
            configuration: ObjectFSConfiguration(uid: 1000, gid: 1000, stagingDirectory: uniqueStagingDirectory()))
        for entry in try await fs.list(rootInode) {
            let a = try await fs.lookup(parent: rootInode, name: entry.name)
            #expect(a.kind == .directory && a.mode == 0o701 && a.mtime == t && a.uid == 42, "\(entry.name)")
        }
    }

    @Test func aChangeThatChangesNothingSendsNothing() async throws {
        let h = try Harness()
        try await h.mkdir("d")
        let a = try await h.resolve("d")
        let puts = h.storage.calls(.put)
        _ = try await h.fs.setattr(a.ino, AttributeChanges(mode: a.mode, mtime: .set(a.mtime)))
        #expect(h.storage.calls(.put) == puts)
    }
}

@Suite struct CreateReadOnlyTests {
    /// `flock FILE` creates FILE with O_RDONLY|O_CREAT: it must be stored at close, not only at
    /// unmount (and so lost to a kill -9).
    @Test func aFileCreatedReadOnlyIsStoredAtClose() async throws {
        let h = try Harness()
        let (_, fh) = try await h.fs.create(
            parent: rootInode, name: "lock", mode: 0o644, flags: OpenFlags(posix: O_RDONLY | O_CREAT))
        try await h.fs.flush(fh)
        await h.fs.release(fh)
        #expect(await h.keys() == ["lock"])
        #expect(await h.fs.pendingUploads == 0)
    }
}
