import Synchronization
import Testing

@testable import FuseKit

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct LookupCounterTests {
    @Test func countsUpAndFreesAtZero() {
        let c = LookupCounter()
        c.add(5)
        c.add(5)
        c.add(7, 3)
        #expect(c.count(5) == 2)
        #expect(!c.forget(5, 1))
        #expect(c.forget(5, 1))
        #expect(c.count(5) == 0)
        #expect(!c.forget(7, 2))
        #expect(c.forget(7, 1))
        #expect(c.trackedInodes == 0)
    }

    @Test func forgettingMoreThanCountedFreesWithoutUnderflow() {
        let c = LookupCounter()
        c.add(9)
        #expect(c.forget(9, 10))
        #expect(c.forget(9, 1))  // unknown inode: already free
    }
}

@Suite struct AttributeCacheTests {
    func attributes(_ ino: Inode, size: Int64) -> FuseAttributes {
        FuseAttributes(
            ino: ino, type: .regular, permissions: 0o644, size: size, uid: 0, gid: 0, nlink: 1, mtimeSeconds: 0,
            mtimeNanoseconds: 0)
    }

    @Test func answersWhatWasKeptWithTheValidityLeft() throws {
        let c = AttributeCache()
        c.keep(attributes(5, size: 10), for: 30, askedAt: c.generation)
        let (a, seconds) = try #require(c.fresh(5))
        #expect(a.size == 10)
        #expect(seconds > 29 && seconds <= 30)
        #expect(c.fresh(6) == nil)
    }

    @Test func nothingIsKeptWithoutAValidity() {
        let c = AttributeCache()
        c.keep(attributes(5, size: 10), for: 0, askedAt: c.generation)
        #expect(c.fresh(5) == nil)
        c.keep(attributes(5, size: 10), for: 0.001, askedAt: c.generation)
        usleep(5_000)
        #expect(c.fresh(5) == nil)
    }

    @Test func aChangeMakesEverythingKeptStale() {
        let c = AttributeCache()
        c.keep(attributes(5, size: 10), for: 30, askedAt: c.generation)
        c.keep(attributes(6, size: 10), for: 30, askedAt: c.generation)
        c.changed()
        #expect(c.fresh(5) == nil)
        #expect(c.fresh(6) == nil)
    }

    @Test func anAnswerComputedWhileSomethingChangedIsNotKept() {
        let c = AttributeCache()
        let asked = c.generation
        c.changed()  // a write came (or ended) while the getattr ran
        c.keep(attributes(5, size: 10), for: 30, askedAt: asked)
        #expect(c.fresh(5) == nil)
        c.keep(attributes(5, size: 20), for: 30, askedAt: c.generation)
        #expect(c.fresh(5)?.attributes.size == 20)
    }

    @Test func staysWithinItsCapacity() {
        let c = AttributeCache()
        for ino in 1...Inode(AttributeCache.capacity + 10) {
            c.keep(attributes(ino, size: 1), for: 30, askedAt: c.generation)
        }
        #expect(c.count <= AttributeCache.capacity)
        #expect(c.fresh(Inode(AttributeCache.capacity + 10)) != nil)
    }
}

@Suite struct MountOptionStringTests {
    @Test func allowOtherAlwaysComesWithDefaultPermissions() {
        var o = FuseMountOptions(fsName: "objmount:memory://b")
        o.allowOther = true
        o.readOnly = true
        let s = o.optionString
        #expect(s.contains("default_permissions"))
        #expect(s.contains("allow_other"))
        #expect(s.contains(",ro"))
        #expect(s.contains("subtype=objmount"))
        #expect(s.contains("max_read=1048576"))
        #expect(o.arguments.first == "objmount")
    }

    @Test func commasInTheSourceAreEscaped() {
        #expect(FuseMountOptions.escape("a,b\\c") == "a\\,b\\\\c")
    }
}

@Suite struct MountTableTests {
    @Test func parsesMountinfoLines() {
        let text = """
            36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
            42 27 0:39 / /tmp/my\\040mnt rw,nosuid,nodev,relatime - fuse.objmount objmount:memory://b rw,user_id=0
            """
        let m = MountTable.parse(text)
        #expect(m.count == 2)
        #expect(m[1].mountpoint == "/tmp/my mnt")
        #expect(m[1].fsType == "fuse.objmount")
        #expect(m[1].device == "0:39")
        #expect(m[1].source == "objmount:memory://b")
        #expect(m[0].fsType == "ext3")
    }
}

@Suite struct BufferPoolTests {
    @Test func reusesBuffersOfTheStandardSize() {
        let pool = BufferPool(bufferSize: 4096, keep: 2)
        let a = pool.take(100)
        let address = a.buffer.baseAddress
        pool.give(a)
        let b = pool.take(4096)
        #expect(b.buffer.baseAddress == address)
        let big = pool.take(10_000)
        #expect(big.buffer.count >= 10_000)
        pool.give(big)
        pool.give(b)
    }
}

@Suite struct FileTypeTests {
    @Test func modeCarriesTheFileTypeBits() {
        func attributes(_ type: FuseFileType) -> FuseAttributes {
            FuseAttributes(
                ino: 2, type: type, permissions: 0o100_777, size: 4, uid: 0, gid: 0, nlink: 1, mtimeSeconds: 0,
                mtimeNanoseconds: 0)
        }
        #expect(attributes(.regular).mode == UInt32(S_IFREG) | 0o777)
        #expect(attributes(.directory).mode == UInt32(S_IFDIR) | 0o777)
        #expect(attributes(.symlink).mode == UInt32(S_IFLNK) | 0o777)
        #expect(attributes(.symlink).mode & UInt32(S_IFMT) == UInt32(S_IFLNK))
    }
}

/// A filesystem that implements only the required calls and records create/flush/release, to
/// check the protocol's default answers for the optional ones.
final class MinimalFilesystem: FuseFilesystem {
    let calls = Mutex<[String]>([])
    let failFlush: Bool
    init(failFlush: Bool = false) { self.failFlush = failFlush }

    static let file = FuseAttributes(
        ino: 42, type: .regular, permissions: 0o644, size: 0, uid: 0, gid: 0, nlink: 1, mtimeSeconds: 0,
        mtimeNanoseconds: 0)
    func record(_ call: String) { calls.withLock { $0.append(call) } }

    func lookup(parent: Inode, name: String) async throws -> FuseAttributes { throw FuseError(ENOENT) }
    func forget(_ inos: [Inode]) async {}
    func getattr(_ ino: Inode) async throws -> FuseAttributes { Self.file }
    func setattr(_ ino: Inode, _ changes: FuseSetAttributes, handle: UInt64?) async throws -> FuseAttributes {
        Self.file
    }
    func opendir(_ ino: Inode) async throws -> UInt64 { 1 }
    func readdir(_ ino: Inode, handle: UInt64, offset: Int64) async throws -> [FuseDirectoryEntry] { [] }
    func releasedir(_ ino: Inode, handle: UInt64) async {}
    func mkdir(parent: Inode, name: String, mode: UInt32) async throws -> FuseAttributes { throw FuseError(EROFS) }
    func rmdir(parent: Inode, name: String) async throws {}
    func unlink(parent: Inode, name: String) async throws {}
    func rename(parent: Inode, name: String, newParent: Inode, newName: String, noReplace: Bool) async throws {}
    func create(parent: Inode, name: String, mode: UInt32, flags: Int32) async throws -> (
        FuseAttributes, FuseOpenResult
    ) {
        record("create \(parent)/\(name) mode=\(String(mode, radix: 8)) excl=\(flags & O_EXCL != 0)")
        return (Self.file, FuseOpenResult(handle: 7))
    }
    func open(_ ino: Inode, flags: Int32) async throws -> FuseOpenResult { FuseOpenResult(handle: 7) }
    func read(_ ino: Inode, handle: UInt64, offset: Int64, size: Int) async throws -> [UInt8] { [] }
    func write(_ ino: Inode, handle: UInt64, offset: Int64, buffer: FuseWriteBuffer) async throws -> Int { 0 }
    func flush(_ ino: Inode, handle: UInt64) async throws {
        record("flush \(ino) \(handle)")
        if failFlush { throw FuseError(EIO) }
    }
    func fsync(_ ino: Inode, handle: UInt64, dataOnly: Bool) async throws {}
    func release(_ ino: Inode, handle: UInt64) async { record("release \(ino) \(handle)") }
    func statfs(_ ino: Inode) async throws -> FuseStatistics {
        FuseStatistics(blockSize: 4096, blocks: 0, blocksFree: 0, files: 0, filesFree: 0, nameMax: 255)
    }
    func shutdown() async {}
}

@Suite struct DefaultAnswerTests {
    func errno(_ body: () async throws -> Void) async -> Int32? {
        do {
            try await body()
            return nil
        } catch let e as FuseError {
            return e.errno
        } catch {
            return -1
        }
    }

    @Test func unsupportedCallsGiveTheirErrno() async {
        let fs = MinimalFilesystem()
        #expect(await errno { _ = try await fs.link(42, newParent: 1, newName: "hard") } == EPERM)
        #expect(await errno { _ = try await fs.symlink(parent: 1, name: "l", target: "t") } == ENOSYS)
        #expect(await errno { _ = try await fs.readlink(42) } == ENOSYS)
        #expect(
            await errno { try await fs.fallocate(42, handle: 7, mode: 0, offset: 0, length: 1 << 20) } == EOPNOTSUPP)
        #expect(EOPNOTSUPP == ENOTSUP)  // one errno on Linux
        for type in [S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK] {
            #expect(
                await errno { _ = try await fs.mknod(parent: 1, name: "n", mode: UInt32(type) | 0o644, rdev: 0) }
                    == EPERM)
        }
        #expect(fs.calls.withLock { $0 }.isEmpty)
    }

    @Test func mknodOfARegularFileCreatesFlushesAndReleases() async throws {
        let fs = MinimalFilesystem()
        let a = try await fs.mknod(parent: 1, name: "f", mode: UInt32(S_IFREG) | 0o640, rdev: 0)
        #expect(a == MinimalFilesystem.file)
        #expect(fs.calls.withLock { $0 } == ["create 1/f mode=100640 excl=true", "flush 42 7", "release 42 7"])
    }

    @Test func mknodReleasesTheHandleWhenTheFlushFails() async {
        let fs = MinimalFilesystem(failFlush: true)
        #expect(
            await errno { _ = try await fs.mknod(parent: 1, name: "f", mode: UInt32(S_IFREG) | 0o600, rdev: 0) } == EIO)
        #expect(fs.calls.withLock { $0 }.last == "release 42 7")
    }
}

@Suite struct OperationTableTests {
    @Test func registersTheNewCallsButNoLockingOperations() {
        let ops = FuseSession.operations
        #expect(ops.symlink != nil)
        #expect(ops.readlink != nil)
        #expect(ops.link != nil)
        #expect(ops.mknod != nil)
        #expect(ops.fallocate != nil)
        // Without these the kernel keeps flock/fcntl locks local to the mount.
        #expect(ops.getlk == nil)
        #expect(ops.setlk == nil)
        #expect(ops.flock == nil)
    }
}
