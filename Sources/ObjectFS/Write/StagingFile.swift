// StagingFile: the local copy of a file being written. Writes land here and are uploaded
// at flush/fsync/release. One staging file per inode, shared by all its open handles, so that
// every descriptor sees the others' writes. Once a close has made its bytes the version to
// store (sealed, Write/Journal.swift), a staging file is never written again: the next write
// goes to a copy.
//
// A small file starts in memory (up to `memoryLimit`, while the directory holds less than
// `StagingDirectory.memoryCap` that way) and goes to disk only when it grows past it or when
// something needs it there: a `cp` or `tar x` of small files makes no file per file — on this
// kind of machine creating and recycling one was a fifth of the daemon's CPU per small file.
// Nothing is lost by it: a close makes a small file durable by the journal record that carries
// its bytes (Write/Journal.swift), never by an fsync of the file.

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
    /// Staging files being emptied or removed on the I/O pool.
    fileprivate let recycling = Mutex<Int>(0)

    /// Returns once the staging files dropped so far are emptied or removed (at exit, within
    /// `timeout`): one left half-way would outlive the journal that names its mount.
    func finishRecycling(timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while recycling.withLock({ $0 }) > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Bytes of staging files held in memory, and the most there may be.
    private let memoryHeld = Mutex<Int64>(0)
    static let memoryCap: Int64 = 4 << 20

    /// Takes `bytes` more of the memory for staging files; false when the cap would be passed.
    fileprivate func holdMemory(_ bytes: Int64) -> Bool {
        memoryHeld.withLock { held in
            guard held + bytes <= Self.memoryCap else { return false }
            held += bytes
            return true
        }
    }

    fileprivate func releaseMemory(_ bytes: Int64) { memoryHeld.withLock { $0 -= bytes } }

    /// Takes `bytes` more of the memory even past the cap (a file that has nowhere else to be).
    fileprivate func takeMemory(_ bytes: Int64) { memoryHeld.withLock { $0 += bytes } }

    /// Bytes of staging files in memory now (for tests).
    var memoryInUse: Int64 { memoryHeld.withLock { $0 } }

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
    /// The file's descriptor once it is on disk; -1 while its bytes are in `memory`. It changes
    /// once, from -1, on the actor, before any work on the I/O pool uses it.
    private var fd: Int32 = -1
    /// The bytes of a small file not on disk (`nil` once it is), `held` of the directory's
    /// memory counted for them.
    private var memory: [UInt8]?
    private var held: Int64 = 0
    /// The most a file keeps in memory: what a journal record carries.
    static let memoryLimit = Journal.inlineLimit
    private(set) var size: Int64 = 0
    /// Bytes `[0, storedPrefix)` are the file's stored version's (its node's `remote`), not in
    /// this file (a hole): a file opened to be extended is not downloaded, and its upload
    /// copies that prefix on the server (Write/Upload.swift). Writes go beyond it only; a
    /// write below it first brings the prefix here (`fillStoredPrefix`), which sets it to 0.
    var storedPrefix: Int64 = 0
    /// The download of the stored prefix in progress, if any (ObjectFS actor only).
    var prefixFill: Task<FSError?, Never>?
    /// The parts of this file sent while it is written (Write/EarlyParts.swift; ObjectFS
    /// actor only). A write or truncate below what they cover makes them unusable.
    var early: EarlyParts?
    /// Keeps the directory until the file is gone.
    private let directory: StagingDirectory

    /// When the change this file holds began (the oldest pending upload, for `objmount status`).
    let created = ContinuousClock.now
    /// Bytes of this version already on the server in parts of a multipart upload under way
    /// (ObjectFS actor only): what `objmount status` and unmount's progress count as done.
    var sent: Int64 = 0
    /// The bytes of this version still to send.
    var unsent: Int64 { max(0, size - sent) }

    /// A version named by a journal record that is not `done`: the file outlives this object
    /// (and the process), for the mount that recovers it.
    var journaled = false
    /// The file's bytes are on disk (fsync'd). A small sealed file is not synced: the journal
    /// record that names it carries its bytes (Write/Journal.swift).
    var durable = false

    /// A new, empty staging file: in memory (`inMemory`, the default) until it grows, or on
    /// disk at once.
    init(directory: StagingDirectory, name: String, inMemory: Bool = true) throws(FSError) {
        self.directory = directory
        self.name = name
        path = directory.path + "/" + name
        if inMemory {
            memory = []
        } else {
            try moveToDisk()
        }
    }

    /// Whether the file's bytes are on disk (else in memory).
    var onDisk: Bool { memory == nil }

    /// Puts the file on disk (created, or an emptied one reused) with the bytes it held in
    /// memory. On the caller's thread: the actor's, as every change of the file.
    private func moveToDisk() throws(FSError) {
        guard fd < 0 else { return }
        let created = directory.reuse(as: name) ?? open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard created >= 0 else { throw FSError(errno, "cannot create staging file \(path)") }
        if let bytes = memory, !bytes.isEmpty {
            let ok = bytes.withUnsafeBytes { Self.writeFully(created, $0, at: 0) }
            guard ok else {
                let error = errno
                close(created)
                unlink(path)
                throw FSError(error, "cannot write staging file \(path)")
            }
        }
        if size > Int64(memory?.count ?? 0) {
            guard ftruncate(created, off_t(size)) == 0 else {
                let error = errno
                close(created)
                unlink(path)
                throw FSError(error, "cannot extend staging file \(path)")
            }
        }
        fd = created
        memory = nil
        directory.releaseMemory(held)
        held = 0
    }

    private static func writeFully(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int64) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    /// Makes the memory file `length` bytes long (zeros after what it held) if that stays in
    /// memory; false when it must go to disk instead.
    private func resizeInMemory(to length: Int64) -> Bool {
        guard memory != nil, length <= Self.memoryLimit else { return false }
        if length > held {
            // Counted in 4 KiB steps, so that a file written a few bytes at a time does not
            // take the lock for each write.
            let step = min(Self.memoryLimit, (length + 4095) & ~4095) - held
            guard directory.holdMemory(step) else { return false }
            held += step
        }
        let count = memory!.count
        if Int(length) > count {
            memory!.append(contentsOf: repeatElement(0, count: Int(length) - count))
        } else if Int(length) < count {
            memory!.removeLast(count - Int(length))
        }
        return true
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

    /// The staging file `name` made again, durably, from the bytes a journal record carried:
    /// written under another name and renamed over it, so that a failure (a full disk) leaves
    /// what was there, and a hard link to it (`unsaved/`, Write/Unsaved.swift) keeps its bytes.
    init(directory: StagingDirectory, restoring name: String, bytes: [UInt8]) throws(FSError) {
        self.directory = directory
        self.name = name
        path = directory.path + "/" + name
        let temporary = path + ".restore"
        let fd = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError(errno, "cannot create staging file \(temporary)") }
        let written = bytes.withUnsafeBytes { Self.writeFully(fd, $0, at: 0) }
        guard written, fsync(fd) == 0, rename(temporary, path) == 0 else {
            let error = errno
            close(fd)
            unlink(temporary)
            throw FSError(error == 0 ? EIO : error, "cannot restore staging file \(path)")
        }
        self.fd = fd
        journaled = true
        size = Int64(bytes.count)
        durable = true
    }

    /// The staging file `name` in memory with `bytes` (past the memory cap: it has nowhere else
    /// to be), for a journal record whose bytes the disk has no room for.
    init(directory: StagingDirectory, keeping name: String, bytes: [UInt8]) {
        self.directory = directory
        self.name = name
        path = directory.path + "/" + name
        memory = bytes
        held = Int64(bytes.count)
        directory.takeMemory(held)
        size = held
        journaled = true
    }

    deinit {
        early?.abandon()
        guard fd >= 0 else {
            directory.releaseMemory(held)
            return
        }
        guard !journaled else {
            close(fd)
            return
        }
        // Not on the thread that dropped the last reference, which may be the actor's.
        let (fd, name, directory) = (self.fd, self.name, self.directory)
        directory.recycling.withLock { $0 += 1 }
        BlockingIOPool.shared.submit {
            directory.recycle(fd, name: name)
            directory.recycling.withLock { $0 -= 1 }
        }
    }

    /// A new staging file `name` with this one's bytes (on the I/O pool: the kernel copies them
    /// without bringing them to user space where it can) and its stored prefix.
    func copy(as name: String) async throws(FSError) -> StagingFile {
        if let bytes = memory {
            let copy = try StagingFile(directory: directory, name: name)
            var failure: FSError?
            bytes.withUnsafeBytes { raw in
                do throws(FSError) { try copy.write(raw, at: 0) } catch { failure = error }
            }
            if let failure { throw failure }
            return copy
        }
        let copy = try StagingFile(directory: directory, name: name, inMemory: false)
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
        let end = offset + Int64(bytes.count)
        if let early, offset < early.covered { early.broken = true }
        if memory != nil {
            if resizeInMemory(to: max(size, end)) {
                memory!.withUnsafeMutableBytes { m in
                    if !bytes.isEmpty {
                        (m.baseAddress! + Int(offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                    }
                }
                size = Int64(memory!.count)
                return
            }
            try moveToDisk()
        }
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
        if memory != nil { return try read(at: offset, count: count) }
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
        if let bytes = memory {
            // The whole file shares its buffer (a journal record of a sealed file, never written
            // again, holds no second copy of it).
            return offset == 0 && n == bytes.count ? bytes : Array(bytes[Int(offset)..<(Int(offset) + n)])
        }
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
        if memory != nil {
            if resizeInMemory(to: length) {
                size = length
                storedPrefix = min(storedPrefix, length)
                return
            }
            try moveToDisk()
        }
        if let early, length < early.covered { early.broken = true }
        guard ftruncate(fd, off_t(length)) == 0 else {
            throw FSError(errno, "cannot truncate staging file")
        }
        size = length
        storedPrefix = min(storedPrefix, length)
    }

    /// Makes the file durable on disk (putting it there first if it is in memory).
    func sync() throws(FSError) {
        try moveToDisk()
        guard fsync(fd) == 0 else { throw FSError(errno, "cannot sync staging file") }
    }

    /// `sync()` on the I/O pool.
    func syncOffPool() async throws(FSError) {
        try moveToDisk()
        let error = await BlockingIOPool.shared.run { () -> Int32 in fsync(self.fd) == 0 ? 0 : errno }
        if error != 0 { throw FSError(error, "cannot sync staging file \(path)") }
    }

    func payload(offset: Int64 = 0, length: Int64? = nil) -> Payload {
        let length = length ?? size - offset
        if let bytes = memory { return .bytes(Array(bytes[Int(offset)..<Int(offset + length)])) }
        return .file(path: path, offset: offset, length: length)
    }
}
