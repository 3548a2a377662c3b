// FuseBridge: the thin adapter between FuseKit and ObjectFS — translate, call, translate back.
// No filesystem logic lives here.

import FuseKit
import ObjectFS
import ObjectStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

final class FuseBridge: FuseFilesystem {
    let fs: ObjectFS
    let logger: Logger

    /// Where the data of files that could not be stored is kept at exit, and the report of it
    /// for `objmount unmount` (nil: none written).
    let unsavedDirectory: String
    let unsavedReport: String?
    /// Where the files and bytes left are written each second while pending files are stored
    /// at exit (nil: nowhere).
    let progressFile: String?
    /// Files whose data is kept locally because it could not be stored, and those that could
    /// not even be kept (set at shutdown).
    private let outcome = Mutex<(kept: [ObjectFS.KeptFile], lost: [String])>(([], []))
    var unsaved: [ObjectFS.KeptFile] { outcome.withLock { $0.kept } }
    var lost: [String] { outcome.withLock { $0.lost } }

    init(
        fs: ObjectFS, logger: Logger, unsavedDirectory: String, unsavedReport: String? = nil,
        progressFile: String? = nil
    ) {
        self.fs = fs
        self.logger = logger
        self.unsavedDirectory = unsavedDirectory
        self.unsavedReport = unsavedReport
        self.progressFile = progressFile
    }

    /// Runs `body`, turning an FSError into the FuseError of its errno. Failures other than
    /// "expected" answers (no such file, exists, not empty...) are logged with their cause.
    private func call<T>(_ what: String, _ body: () async throws(FSError) -> T) async throws(FuseError) -> T {
        do {
            return try await body()
        } catch {
            switch error.errno {
            case ENOENT, EEXIST, ENOTEMPTY, EISDIR, ENOTDIR, EROFS, ENAMETOOLONG, EINVAL, EBADF, ENODATA, ENOTSUP,
                EPERM, E2BIG, ELOOP:
                logger.debug("\(what): \(error)")
            default:
                logger.error("\(what): \(error)")
            }
            throw FuseError(error.errno)
        }
    }

    static func attributes(_ a: FileAttributes) -> FuseAttributes {
        var f = FuseAttributes(
            ino: a.ino, type: type(a.kind), permissions: a.mode, size: a.size,
            uid: a.uid, gid: a.gid, nlink: a.nlink, mtimeSeconds: a.mtime.seconds,
            mtimeNanoseconds: a.mtime.nanoseconds)
        f.cacheSeconds = a.trustedFor
        return f
    }

    static func type(_ kind: FileKind) -> FuseFileType {
        switch kind {
        case .file: .regular
        case .directory: .directory
        case .symlink: .symlink
        }
    }

    func lookup(parent: Inode, name: String) async throws -> FuseAttributes {
        Self.attributes(
            try await call("lookup \(name)") { () async throws(FSError) in
                try await fs.lookup(parent: parent, name: name)
            })
    }

    func forget(_ inos: [Inode]) async { await fs.forget(inos) }

    func getattr(_ ino: Inode) async throws -> FuseAttributes {
        Self.attributes(try await call("getattr") { () async throws(FSError) in try await fs.getattr(ino) })
    }

    func setattr(_ ino: Inode, _ c: FuseSetAttributes, handle: UInt64?) async throws -> FuseAttributes {
        var changes = AttributeChanges(size: c.size, mode: c.mode, uid: c.uid, gid: c.gid)
        switch c.mtime {
        case .now: changes.mtime = .now
        case .set(let s, let n): changes.mtime = .set(Timestamp(seconds: s, nanoseconds: n))
        case nil: break
        }
        let finalChanges = changes
        return Self.attributes(
            try await call("setattr") { () async throws(FSError) in try await fs.setattr(ino, finalChanges) })
    }

    func opendir(_ ino: Inode) async throws -> UInt64 {
        try await call("opendir") { () async throws(FSError) in try await fs.opendir(ino) }
    }

    func readdir(_ ino: Inode, handle: UInt64, offset: Int64) async throws -> [FuseDirectoryEntry] {
        let slice = try await call("readdir") { () async throws(FSError) in
            try await fs.readdir(handle, offset: Int(offset))
        }
        return slice.enumerated().map { i, e in
            FuseDirectoryEntry(
                name: e.name, attributes: Self.attributes(e.attributes), nextOffset: offset + Int64(i) + 1,
                cacheable: e.attributesComplete, typeKnown: e.kindKnown)
        }
    }

    func releasedir(_ ino: Inode, handle: UInt64) async { await fs.releasedir(handle) }

    func mkdir(parent: Inode, name: String, mode: UInt32) async throws -> FuseAttributes {
        Self.attributes(
            try await call("mkdir \(name)") { () async throws(FSError) in
                try await fs.mkdir(parent: parent, name: name, mode: mode)
            })
    }

    func rmdir(parent: Inode, name: String) async throws {
        try await call("rmdir \(name)") { () async throws(FSError) in try await fs.rmdir(parent: parent, name: name) }
    }

    func unlink(parent: Inode, name: String) async throws {
        try await call("unlink \(name)") { () async throws(FSError) in try await fs.unlink(parent: parent, name: name) }
    }

    func rename(parent: Inode, name: String, newParent: Inode, newName: String, noReplace: Bool) async throws {
        try await call("rename \(name) to \(newName)") { () async throws(FSError) in
            try await fs.rename(
                parent: parent, name: name, newParent: newParent, newName: newName, noReplace: noReplace)
        }
    }

    func create(parent: Inode, name: String, mode: UInt32, flags: Int32) async throws -> (
        FuseAttributes, FuseOpenResult
    ) {
        let (a, fh) = try await call("create \(name)") { () async throws(FSError) in
            try await fs.create(parent: parent, name: name, mode: mode, flags: OpenFlags(posix: flags))
        }
        return (Self.attributes(a), FuseOpenResult(handle: fh))
    }

    func open(_ ino: Inode, flags: Int32) async throws -> FuseOpenResult {
        let fh = try await call("open") { () async throws(FSError) in
            try await fs.open(ino, flags: OpenFlags(posix: flags))
        }
        return FuseOpenResult(handle: fh, keepCache: await fs.keepsPageCache(fh))
    }

    func read(_ ino: Inode, handle: UInt64, offset: Int64, size: Int) async throws -> [UInt8] {
        try await call("read") { () async throws(FSError) in try await fs.read(handle, offset: offset, count: size) }
    }

    func readImmediately(_ ino: Inode, handle: UInt64, offset: Int64, into buffer: UnsafeMutableRawBufferPointer)
        -> Int?
    {
        fs.readImmediately(handle, offset: offset, into: buffer)
    }

    func write(_ ino: Inode, handle: UInt64, offset: Int64, buffer: FuseWriteBuffer) async throws -> Int {
        let borrowed = BorrowedBytes(buffer.bytes)
        return try await call("write") { () async throws(FSError) in
            try await fs.write(handle, offset: offset, borrowed: borrowed)
        }
    }

    func flush(_ ino: Inode, handle: UInt64) async throws {
        try await call("flush") { () async throws(FSError) in try await fs.flush(handle) }
    }

    func fsync(_ ino: Inode, handle: UInt64, dataOnly: Bool) async throws {
        try await call("fsync") { () async throws(FSError) in try await fs.fsync(handle) }
    }

    func release(_ ino: Inode, handle: UInt64) async { await fs.release(handle) }

    func fsyncdir(_ ino: Inode, handle: UInt64, dataOnly: Bool) async throws {
        try await call("fsyncdir") { () async throws(FSError) in try await fs.fsyncDirectory(ino) }
    }

    func statfs(_ ino: Inode) async throws -> FuseStatistics {
        let s = await fs.statfs()
        return FuseStatistics(
            blockSize: s.blockSize, blocks: s.totalBlocks, blocksFree: s.freeBlocks, files: s.totalFiles,
            filesFree: s.freeFiles, nameMax: s.maximumNameLength)
    }

    func shutdown() async {
        let (files, bytes) = await fs.pendingSummary
        if files > 0 {
            logger.info(
                "storing \(files) file(s) (\(ByteSize(bytes: bytes).approximate)) with pending writes before exit")
        }
        let progress = Task { [fs, progressFile] in
            guard let progressFile else { return }
            while !Task.isCancelled {
                let (files, bytes) = await fs.pendingSummary
                let temporary = progressFile + ".new"
                let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                if fd >= 0 {
                    writeAll(fd, "\(files) \(bytes)\n")
                    close(fd)
                    Glibc.rename(temporary, progressFile)
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        for failure in await fs.flushAll() {
            logger.error("could not store pending data: \(failure)")
        }
        progress.cancel()
        // Once it has stopped: a write under way would otherwise put the file back.
        await progress.value
        if let progressFile { Glibc.unlink(progressFile) }
        // What could not be stored is kept, never dropped with the staging directory.
        let (kept, failed) =
            await fs.pendingUploads > 0 && Paths.makeDirectories(unsavedDirectory)
            ? await fs.keepUnsaved(in: unsavedDirectory) : ([], [])
        outcome.withLock { $0 = (kept, failed) }
        var report = ""
        for file in kept {
            let why = file.openForWriting ? " (still open for writing)" : ""
            let line =
                file.inJournal
                ? "not stored: \(file.key) (\(file.size) bytes) is kept in the journal \(file.path); "
                    + "the next mount of this remote stores it"
                : "not stored\(why): \(file.key) (\(file.size) bytes) is kept in \(file.path)"
            logger.error(line)
            report += line + "\n"
        }
        for key in failed {
            let line = "not stored and could not be kept: \(key)"
            logger.error(line)
            report += line + "\n"
        }
        if let path = unsavedReport, !report.isEmpty {
            let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            if fd >= 0 {
                writeAll(fd, report)
                close(fd)
            }
        }
        await fs.settleReads()
    }

    func listxattr(_ ino: Inode) async throws -> [String] {
        try await call("listxattr") { () async throws(FSError) in try await fs.extendedAttributeNames(ino) }
    }

    var extendedAttributeNamespaces: [String] { [ObjectFS.userNamespace] }

    func getxattr(_ ino: Inode, name: String) async throws -> [UInt8] {
        try await call("getxattr \(name)") { () async throws(FSError) in try await fs.extendedAttribute(ino, name: name)
        }
    }

    func setxattr(_ ino: Inode, name: String, value: [UInt8], flags: Int32) async throws {
        try await call("setxattr \(name)") { () async throws(FSError) in
            try await fs.changeExtendedAttribute(ino, name: name, value: value, flags: flags)
        }
    }

    func removexattr(_ ino: Inode, name: String) async throws {
        try await call("removexattr \(name)") { () async throws(FSError) in
            try await fs.changeExtendedAttribute(ino, name: name, value: nil)
        }
    }

    func symlink(parent: Inode, name: String, target: String) async throws -> FuseAttributes {
        Self.attributes(
            try await call("symlink \(name)") { () async throws(FSError) in
                try await fs.symlink(parent: parent, name: name, target: target)
            })
    }

    func readlink(_ ino: Inode) async throws -> String {
        try await call("readlink") { () async throws(FSError) in try await fs.readlink(ino) }
    }
}
