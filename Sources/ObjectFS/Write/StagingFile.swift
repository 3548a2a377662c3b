// StagingFile: the local copy of a file being written. Writes land here and are uploaded
// at flush/fsync/release. One staging file per inode, shared by all its open handles, so that
// every descriptor sees the others' writes. Once a close has made its bytes the version to
// store (sealed, Write/Journal.swift), a staging file is never written again: the next write
// goes to a copy.

import ObjectStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The directory of one filesystem's staging files. The filesystem owns it: created here,
/// removed (when empty) once the filesystem and its last staging file are gone.
final class StagingDirectory: Sendable {
    let path: String
    /// Emptied staging files kept for the next ones, as `<name>.free` (a name no journal record
    /// uses, with the prefix that a later mount's recovery removes): on ext4, making and
    /// removing a file costs far more than a truncate and two renames (inode allocation skips
    /// every recently freed inode, one inode-table lookup each). Up to `keptFree`.
    private let free = Mutex<(files: [(fd: Int32, name: String)], closed: Bool)>(([], false))
    static let keptFree = 64

    init(_ path: String) throws(FSError) {
        self.path = path
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw FSError(errno, "cannot create staging directory \(path)")
        }
    }

    deinit {
        removeKeptFiles()
        rmdir(path)
    }

    /// Removes the emptied files kept for reuse and keeps no more (at exit: the process may end
    /// before this object does).
    func removeKeptFiles() {
        let files = free.withLock { state in
            defer { state = ([], true) }
            return state.files
        }
        for file in files {
            close(file.fd)
            unlink(path + "/" + file.name)
        }
    }

    /// An emptied file renamed `name`, open for reading and writing, if one is kept.
    fileprivate func reuse(as name: String) -> Int32? {
        guard let file = free.withLock({ $0.files.popLast() }) else { return nil }
        guard Glibc.rename(path + "/" + file.name, path + "/" + name) == 0 else {
            close(file.fd)
            unlink(path + "/" + file.name)
            return nil
        }
        return file.fd
    }

    /// Empties the staging file `name` (open as `fd`) and keeps it for reuse, or removes it.
    /// Blocking: on the I/O pool.
    fileprivate func recycle(_ fd: Int32, name: String) {
        let freeName = name + ".free"
        // Back to offset 0 as well: `copy(as:)` writes at the descriptor's offset.
        guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0,
            Glibc.rename(path + "/" + name, path + "/" + freeName) == 0
        else {
            close(fd)
            unlink(path + "/" + name)
            return
        }
        // ext4 marks a file truncated to 0 for a flush of its data at its next close ("replace
        // via truncate", auto_da_alloc); a close of another descriptor clears the mark while the
        // file is empty, so a killed daemon's exit does not flush kept files. (Dead mounts after
        // SIGKILL, once blamed on these flushes, came from the order in which the FUSE device
        // and the auto_unmount socket are released: see FuseSession.holdDeviceLast.)
        let other = open(path + "/" + freeName, O_RDONLY | O_CLOEXEC)
        if other >= 0 { close(other) }
        let kept = free.withLock { state in
            guard !state.closed, state.files.count < Self.keptFree else { return false }
            state.files.append((fd, freeName))
            return true
        }
        if !kept {
            close(fd)
            unlink(path + "/" + freeName)
        }
    }
}

/// `@unchecked Sendable`: `size` changes only on the ObjectFS actor; work on the I/O pool gets
/// a snapshot of it, and holds the file (so its descriptor stays open) until it is done.
final class StagingFile: @unchecked Sendable {
    let path: String
    /// The file's name in its directory.
    let name: String
    private let fd: Int32
    private(set) var size: Int64 = 0
    /// Bytes `[0, storedPrefix)` are the file's stored version's (its node's `remote`), not in
    /// this file (a hole): a file opened to be extended is not downloaded, and its upload
    /// copies that prefix on the server (Write/Upload.swift). Writes go beyond it only; a
    /// write below it first brings the prefix here (`fillStoredPrefix`), which sets it to 0.
    var storedPrefix: Int64 = 0
    /// The download of the stored prefix in progress, if any (ObjectFS actor only).
    var prefixFill: Task<FSError?, Never>?
    /// Keeps the directory until the file is gone.
    private let directory: StagingDirectory

    /// A version named by a journal record that is not `done`: the file outlives this object
    /// (and the process), for the mount that recovers it.
    var journaled = false
    /// The file's bytes are on disk (fsync'd). A small sealed file is not synced: the journal
    /// record that names it carries its bytes (Write/Journal.swift).
    var durable = false

    init(directory: StagingDirectory, name: String) throws(FSError) {
        self.directory = directory
        self.name = name
        path = directory.path + "/" + name
        fd = directory.reuse(as: name) ?? open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError(errno, "cannot create staging file \(path)") }
    }

    /// The staging file `name` an earlier mount left in `directory`.
    init(directory: StagingDirectory, existing name: String) throws(FSError) {
        self.directory = directory
        self.name = name
        path = directory.path + "/" + name
        fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw FSError(errno, "cannot open staging file \(path)") }
        var st = stat()
        fstat(fd, &st)
        size = Int64(st.st_size)
        journaled = true
        durable = true
    }

    /// The staging file `name` made again, durably, from the bytes a journal record carried.
    init(directory: StagingDirectory, restoring name: String, bytes: [UInt8]) throws(FSError) {
        self.directory = directory
        self.name = name
        path = directory.path + "/" + name
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError(errno, "cannot create staging file \(path)") }
        journaled = true
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard written == bytes.count, fsync(fd) == 0 else {
            throw FSError(written < 0 ? errno : EIO, "cannot restore staging file \(path)")
        }
        size = Int64(bytes.count)
        durable = true
    }

    deinit {
        guard !journaled else {
            close(fd)
            return
        }
        // Not on the thread that dropped the last reference, which may be the actor's.
        let (fd, name, directory) = (self.fd, self.name, self.directory)
        BlockingIOPool.shared.submit { directory.recycle(fd, name: name) }
    }

    /// A new staging file `name` with this one's bytes (on the I/O pool: the kernel copies them
    /// without bringing them to user space where it can) and its stored prefix.
    func copy(as name: String) async throws(FSError) -> StagingFile {
        let copy = try StagingFile(directory: directory, name: name)
        let size = self.size
        let prefix = storedPrefix
        let result = await BlockingIOPool.shared.run { () -> Int32 in
            var offset = prefix
            // sendfile copies file to file inside the kernel; it writes at the output's offset.
            guard ftruncate(copy.fd, off_t(size)) == 0, lseek(copy.fd, off_t(prefix), SEEK_SET) == prefix else {
                return errno
            }
            while offset < size {
                var from = off_t(offset)
                let n = sendfile(copy.fd, self.fd, &from, Int(min(size - offset, 1 << 30)))
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return n < 0 ? errno : EIO }
                offset += Int64(n)
            }
            return 0
        }
        guard result == 0 else { throw FSError(result, "cannot copy staging file \(path)") }
        copy.size = size
        copy.storedPrefix = prefix
        return copy
    }

    /// Bytes written since the last background sync started, and whether one runs.
    private let unsynced = Mutex<(bytes: Int64, syncing: Bool)>((0, false))
    /// A large file being written is synced in the background every this many bytes, so that
    /// the fsync of its close (the seal) has little left to write.
    static let backgroundSyncInterval: Int64 = 64 << 20

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FSError) {
        defer { noteWritten(Int64(bytes.count)) }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FSError(errno, "cannot write staging file")
            }
            done += n
        }
        size = max(size, offset + Int64(bytes.count))
    }

    private func noteWritten(_ count: Int64) {
        let start = unsynced.withLock { u -> Bool in
            u.bytes += count
            guard u.bytes >= Self.backgroundSyncInterval, !u.syncing else { return false }
            u = (0, true)
            return true
        }
        guard start else { return }
        BlockingIOPool.shared.submit {
            fdatasync(self.fd)
            self.unsynced.withLock { $0.syncing = false }
        }
    }

    /// `read(at:count:)` on the I/O pool, so that a disk read never holds a cooperative thread.
    func readOffPool(at offset: Int64, count: Int) async throws(FSError) -> [UInt8] {
        let size = self.size
        do {
            return try await BlockingIOPool.shared.run { () throws(FSError) -> [UInt8] in
                try self.read(at: offset, count: count, size: size)
            }
        } catch {
            throw FSError.from(error, "staging file")
        }
    }

    func read(at offset: Int64, count: Int) throws(FSError) -> [UInt8] {
        try read(at: offset, count: count, size: size)
    }

    private func read(at offset: Int64, count: Int, size: Int64) throws(FSError) -> [UInt8] {
        let n = Int(max(0, min(Int64(count), size - offset)))
        guard n > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: n)
        var done = 0
        while done < n {
            let r = out.withUnsafeMutableBytes {
                pread(fd, $0.baseAddress! + done, n - done, off_t(offset) + off_t(done))
            }
            if r < 0 {
                if errno == EINTR { continue }
                throw FSError(errno, "cannot read staging file")
            }
            if r == 0 { break }
            done += r
        }
        if done < n { out.removeLast(n - done) }
        return out
    }

    func truncate(to length: Int64) throws(FSError) {
        guard ftruncate(fd, off_t(length)) == 0 else {
            throw FSError(errno, "cannot truncate staging file")
        }
        size = length
        storedPrefix = min(storedPrefix, length)
    }

    func sync() throws(FSError) {
        guard fsync(fd) == 0 else { throw FSError(errno, "cannot sync staging file") }
    }

    /// `sync()` on the I/O pool.
    func syncOffPool() async throws(FSError) {
        let error = await BlockingIOPool.shared.run { () -> Int32 in fsync(self.fd) == 0 ? 0 : errno }
        if error != 0 { throw FSError(error, "cannot sync staging file \(path)") }
    }

    func payload(offset: Int64 = 0, length: Int64? = nil) -> Payload {
        .file(path: path, offset: offset, length: length ?? size - offset)
    }
}
