// Journal: the write-back's promise, kept on disk. When `close` returns, the file's bytes are in
// a staging file that is fsync'd and never written again ("sealed"), and a `put` record naming
// that file, its key and its metadata is appended here and fdatasync'd. A `done` record follows
// once the object is stored (or the file was deleted). A mount that finds the journal of a
// mount that is gone (killed, crashed, unmounted with the server down) adopts every `put`
// without its `done` and stores it (ObjectFS.recoverPending).
//
// One journal file per mount, `journal-<pid>-<instance>.log`, in the per-remote directory that
// also holds the staging files, flock'ed while its mount lives: a lock that can be taken means
// its owner is gone. Records are lines `<checksum> <fields>\n`, fields tab-separated and
// %-escaped. A line that is torn (no newline, bad checksum) ends the journal: what follows it
// was never acknowledged, since a `put` is synced (fdatasync, on the I/O pool: `descriptor`)
// before the call that wrote it returns. Records are written in order on the filesystem's
// actor; a `done` is not synced on its own (a lost one only means a second, harmless upload).
//
// A small file (up to `inlineLimit`) is not fsync'd at its close: its `put` record carries its
// bytes, so that a close costs one sync, the journal's. Recovery writes such a file again from
// its record; compaction syncs the files whose bytes only the journal held before it drops them,
// and writes the bytes again for a file that is only in memory (Write/StagingFile.swift).

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

final class Journal {
    /// A version to store: the sealed staging file `file` (a name in the journal's directory),
    /// under `key`, with `metadata` (POSIX and user metadata, as PutOptions carries it).
    struct Entry: Equatable {
        var file: String
        var key: ObjectKey
        var size: Int64
        var contentType: String?
        var metadata: [String: String]
        /// The file's bytes, when the record carries them (a small file that was not synced).
        var data: [UInt8]? = nil
        /// The file's first bytes are those of the version stored at `key` (Write/Upload.swift).
        var storedPrefix: StoredPrefix? = nil
    }

    struct StoredPrefix: Equatable {
        var length: Int64
        var etag: String
        var objectSize: Int64
    }

    /// Files up to this size are kept by their `put` record rather than by an fsync.
    static let inlineLimit: Int64 = 64 << 10

    enum Record: Equatable {
        case put(Entry)
        case done(file: String)
        /// A multipart upload this mount began for a file still being written (its parts go
        /// out before the close: Write/EarlyParts.swift), and its end (completed or aborted).
        /// One that a mount that is gone never ended is aborted by the mount that adopts it.
        case began(MultipartUpload)
        case ended(uploadID: String)
    }

    let directory: String
    let name: String
    private var fd: Int32
    private var bytes: Int64 = 0
    /// Space allocated to the journal past its end (`reserve`), up to this offset.
    private var reservedEnd: Int64 = 0
    /// The `put` records without their `done`, by file (without their bytes); `order` keeps
    /// them in journal order.
    private(set) var pending: [String: Entry] = [:]
    /// Pending files whose latest record carries their bytes: not synced on their own.
    private var keptByRecord: Set<String> = []
    /// The bytes of those of them that have no file on disk at all (a staging file in memory):
    /// a compaction writes them into the new journal again, as the only copy a crash keeps.
    /// They share the staging file's buffer (StagingFile.read of a whole file).
    private var carried: [String: [UInt8]] = [:]
    private var order: [String: UInt64] = [:]
    private var serial: UInt64 = 0
    /// Multipart uploads begun and not ended, by upload ID.
    private(set) var openUploads: [String: MultipartUpload] = [:]
    /// Rewritten (only the pending records kept) when it grows past this.
    var compactionThreshold: Int64 = 4 << 20
    /// A compaction writes the records it keeps in pieces of about this size.
    static let compactionChunk = 256 << 10
    /// The size the journal was left at by its last compaction (or attempt): the next one waits
    /// until it has doubled. What a compaction keeps (the records of pending files, with the
    /// bytes of those only in memory, up to 4 MiB twice over in hex) can exceed the threshold,
    /// and a `tar x` of small files then compacted at every record.
    private var compactedSize: Int64 = 0
    /// Compactions done (for tests).
    private(set) var compactions = 0

    /// Opens a new journal for this mount in `directory` (which must exist).
    init(directory: String, instance: UInt32) throws(FSError) {
        self.directory = directory
        name = "journal-\(getpid())-\(instance).log"
        fd = try Self.createLocked(directory + "/" + name)
        reserve()
    }

    /// Records must be writable when staging files have filled the cache disk: a `put` so
    /// that a file written before the disk filled can still be acknowledged and stored, a
    /// `done` so that a stored file is not stored again. The journal keeps `reserveChunk` or
    /// more allocated past its last record, taken while there is room: zeros, which end a
    /// journal as a torn line does (records are written at `bytes`, not appended).
    static let reserveChunk: Int64 = 256 << 10

    private func reserve() {
        guard reservedEnd - bytes < Self.reserveChunk / 2 else { return }
        let start = max(reservedEnd, bytes)
        // Zeros written, not fallocate's unwritten extents: a record written over unwritten
        // space changes the file's extent map, and its fdatasync then waits for a commit of the
        // filesystem's journal (ext4's jbd2) each time; over written zeros within the file's
        // size it writes the data only.
        let written = Self.zeros.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(start)) }
        if written == Int(Self.reserveChunk) {
            reservedEnd = start + Self.reserveChunk
        } else if written > 0 {
            // A disk that had room for part of it: what was written stays as zeros.
            reservedEnd = start + Int64(written)
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: Int(reserveChunk))

    deinit {
        close(fd)
        for old in retired { close(old) }
    }

    private static func createLocked(_ path: String) throws(FSError) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError(errno, "cannot create the journal \(path)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(fd)
            throw FSError(e, "cannot lock the journal \(path)")
        }
        return fd
    }

    /// The descriptor to fdatasync for the records appended so far to be kept by a crash
    /// (descriptors replaced by a compaction stay open, so a sync in flight never hits a
    /// closed one).
    var descriptor: Int32 { fd }
    private var retired: [Int32] = []

    /// Appends `record` (written, not synced: see `descriptor`). `inMemory`: the bytes a `put`
    /// carries are those of a file that is not on disk.
    func append(_ record: Record, inMemory: Bool = false) throws(FSError) {
        try write(Self.encode(record))
        switch record {
        case .put(var entry):
            if order[entry.file] == nil {
                serial += 1
                order[entry.file] = serial
            }
            if entry.data == nil {
                keptByRecord.remove(entry.file)
                carried[entry.file] = nil
            } else {
                keptByRecord.insert(entry.file)
                carried[entry.file] = inMemory ? entry.data : nil
                entry.data = nil
            }
            pending[entry.file] = entry
        case .done(let file):
            pending[file] = nil
            order[file] = nil
            keptByRecord.remove(file)
            carried[file] = nil
        case .began(let upload):
            openUploads[upload.uploadID] = upload
        case .ended(let id):
            openUploads[id] = nil
        }
        if bytes > max(compactionThreshold, 2 * compactedSize) { compact() }
        reserve()
    }

    private func write(_ line: [UInt8]) throws(FSError) {
        var done = 0
        while done < line.count {
            let n = line.withUnsafeBytes {
                pwrite(fd, $0.baseAddress! + done, $0.count - done, off_t(bytes) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                // A partial line is a torn tail: cut it, so that the next record starts clean.
                ftruncate(fd, off_t(bytes))
                reservedEnd = bytes  // a truncate frees what was allocated past the end
                throw FSError(e, "cannot write the journal \(directory)/\(name)")
            }
            done += n
        }
        bytes += Int64(line.count)
    }

    /// The pending entries in the order they were first recorded.
    var pendingInOrder: [Entry] {
        pending.values.sorted { (order[$0.file] ?? 0) < (order[$1.file] ?? 0) }
    }

    /// Whether the journal's record of `file` carries its bytes (a small file not synced).
    func carriesBytes(of file: String) -> Bool { keptByRecord.contains(file) }

    /// Rewrites the journal with only its pending records (under a new name, locked before it
    /// replaces the old one, so that no other mount ever sees it unlocked): the files whose
    /// bytes only their records held are synced first, and their records lose the bytes, but
    /// for files in memory, whose records keep them. On failure the old journal stays.
    private func compact() {
        // Tried again once the journal has doubled, whatever happens here.
        compactedSize = bytes
        for file in keptByRecord where carried[file] == nil {
            let fd = open(directory + "/" + file, O_RDONLY | O_CLOEXEC)
            let synced = fd >= 0 && fsync(fd) == 0
            if fd >= 0 { close(fd) }
            guard synced else { return }
        }
        let path = directory + "/" + name
        let temporary = path + ".new"
        guard let newFD = try? Self.createLocked(temporary) else { return }
        // Written in pieces of about `compactionChunk`: the records of small files carry their
        // bytes, and a journal built whole in memory cost a `cp -r` of 1,000 small files 3 MiB
        // of its peak.
        var text: [UInt8] = []
        var total = 0
        var failed = false
        func flush() {
            guard !failed, !text.isEmpty else { return }
            failed = text.withUnsafeBytes { Glibc.write(newFD, $0.baseAddress, $0.count) } != text.count
            total += text.count
            text.removeAll(keepingCapacity: true)
        }
        func add(_ record: Record) {
            guard !failed else { return }
            text += Self.encode(record)
            if text.count >= Self.compactionChunk { flush() }
        }
        for var entry in pendingInOrder {
            entry.data = carried[entry.file]
            add(.put(entry))
        }
        for upload in openUploads.values { add(.began(upload)) }
        flush()
        guard !failed, fsync(newFD) == 0, rename(temporary, path) == 0 else {
            close(newFD)
            unlink(temporary)
            return
        }
        syncDirectory(directory)
        keptByRecord = Set(carried.keys)
        retired.append(fd)
        fd = newFD
        bytes = Int64(total)
        compactedSize = bytes
        compactions += 1
        reservedEnd = 0
        reserve()
    }

    /// Removes the journal (at a clean exit with nothing pending).
    func remove() {
        unlink(directory + "/" + name)
    }

    // MARK: - Journals left by mounts that are gone

    /// What a mount that is gone left: its pending entries in order; `files` are all the files
    /// of that mount (its staging files, sealed or not) and the journal itself.
    struct Orphan {
        var journal: String
        var entries: [Entry]
        /// Multipart uploads it began and never ended.
        var uploads: [MultipartUpload]
        fileprivate var lockFD: Int32
    }

    /// The journals in the directory whose mounts are gone (their lock could be taken), locked
    /// now by this mount. `release` them once their entries are adopted.
    func orphans() -> [Orphan] {
        guard let names = try? listDirectory(directory) else { return [] }
        var found: [Orphan] = []
        for file in names.sorted() where file.hasPrefix("journal-") && file.hasSuffix(".log") && file != name {
            let path = directory + "/" + file
            let lock = open(path, O_RDONLY | O_CLOEXEC)
            guard lock >= 0 else { continue }
            var before = stat()
            var now = stat()
            // Taken, and still the file of that name (another mount may have adopted and removed it).
            guard flock(lock, LOCK_EX | LOCK_NB) == 0, fstat(lock, &before) == 0, stat(path, &now) == 0,
                before.st_ino == now.st_ino
            else {
                close(lock)
                continue
            }
            let records = Self.decode(readAll(lock))
            found.append(
                Orphan(
                    journal: file, entries: Self.pending(in: records), uploads: Self.openUploads(in: records),
                    lockFD: lock))
        }
        return found
    }

    /// Forgets an adopted journal: removes it and the staging files of its mount that no entry
    /// still names (written but never closed, or stored).
    func release(_ orphan: Orphan, keeping kept: Set<String>) {
        let stem = orphan.journal.dropFirst("journal-".count).dropLast(".log".count)
        if let names = try? listDirectory(directory) {
            for file in names where file.hasPrefix("staged-\(stem)-") && !kept.contains(file) {
                unlink(directory + "/" + file)
            }
        }
        unlink(directory + "/" + orphan.journal)
        close(orphan.lockFD)
    }

    /// Removes staging files of mounts that left no journal: a mount that ended cleanly
    /// removes its journal, and a staging file it was still emptying (on the I/O pool) as the
    /// process exited stays behind, named by no record. Files this journal adopted keep the
    /// names their mount gave them: they stay.
    func removeLeftovers() {
        guard let names = try? listDirectory(directory) else { return }
        for file in names where file.hasPrefix("staged-") && pending[file] == nil {
            let parts = file.dropFirst("staged-".count).split(separator: "-", maxSplits: 2)
            guard parts.count == 3 else { continue }
            var st = stat()
            // Checked at the moment of removal: a mount starting now creates its journal first.
            let journal = directory + "/journal-\(parts[0])-\(parts[1]).log"
            if stat(journal, &st) != 0 && errno == ENOENT { unlink(directory + "/" + file) }
        }
    }

    /// The `put` records of `records` without a later `done`, in the order they were first put
    /// (with the bytes an earlier record of the same file carried, if the last one has none).
    static func pending(in records: [Record]) -> [Entry] {
        var entries: [String: Entry] = [:]
        var first: [String: Int] = [:]
        for (i, record) in records.enumerated() {
            switch record {
            case .put(var e):
                if e.data == nil, let earlier = entries[e.file]?.data, earlier.count == e.size { e.data = earlier }
                entries[e.file] = e
                if first[e.file] == nil { first[e.file] = i }
            case .done(let file):
                entries[file] = nil
                first[file] = nil
            case .began, .ended:
                break
            }
        }
        return entries.values.sorted { first[$0.file]! < first[$1.file]! }
    }

    /// The multipart uploads `records` begin and do not end.
    static func openUploads(in records: [Record]) -> [MultipartUpload] {
        var open: [String: MultipartUpload] = [:]
        for record in records {
            switch record {
            case .began(let upload): open[upload.uploadID] = upload
            case .ended(let id): open[id] = nil
            case .put, .done: break
            }
        }
        return open.values.sorted { $0.uploadID < $1.uploadID }
    }

    // MARK: - Encoding

    static func encode(_ record: Record) -> [UInt8] {
        var fields: [String]
        switch record {
        case .put(let e):
            fields = ["put", e.file, e.key, String(e.size), e.contentType ?? ""]
            for (name, value) in e.metadata.sorted(by: { $0.key < $1.key }) {
                fields.append(escape(name, also: "=") + "=" + escape(value))
            }
            fields[1] = escape(fields[1])
            fields[2] = escape(fields[2])
            fields[4] = escape(fields[4])
            // No `=`: never taken for a metadata pair.
            if let data = e.data { fields.append(":" + hex(data)) }
            if let p = e.storedPrefix {
                fields.append("@\(p.length),\(p.objectSize),\(escape(p.etag, also: "="))")
            }
        case .done(let file):
            fields = ["done", escape(file)]
        case .began(let upload):
            fields = ["began", escape(upload.key), escape(upload.uploadID)]
        case .ended(let id):
            fields = ["ended", escape(id)]
        }
        let body = Array(fields.joined(separator: "\t").utf8)
        let sum = body.withUnsafeBytes { Checksum.of($0) }
        return Array((hex16(sum) + " ").utf8) + body + [0x0A]
    }

    /// The records of a journal's bytes, up to the first torn or damaged line.
    static func decode(_ bytes: [UInt8]) -> [Record] {
        var records: [Record] = []
        var start = 0
        while start < bytes.count {
            guard let end = bytes[start...].firstIndex(of: 0x0A), end - start > 17,
                bytes[start + 16] == UInt8(ascii: " "),
                let sum = UInt64(String(decoding: bytes[start..<start + 16], as: UTF8.self), radix: 16)
            else { break }
            let body = Array(bytes[(start + 17)..<end])
            guard body.withUnsafeBytes({ Checksum.of($0) }) == sum, let record = parse(body) else { break }
            records.append(record)
            start = end + 1
        }
        return records
    }

    private static func parse(_ body: [UInt8]) -> Record? {
        let fields = body.split(separator: 0x09, omittingEmptySubsequences: false).map {
            String(decoding: $0, as: UTF8.self)
        }
        switch fields.first {
        case "done" where fields.count == 2:
            return unescape(fields[1]).map { .done(file: $0) }
        case "began" where fields.count == 3:
            guard let key = unescape(fields[1]), let id = unescape(fields[2]) else { return nil }
            return .began(MultipartUpload(key: key, uploadID: id))
        case "ended" where fields.count == 2:
            return unescape(fields[1]).map { .ended(uploadID: $0) }
        case "put" where fields.count >= 5:
            guard let file = unescape(fields[1]), let key = unescape(fields[2]), let size = Int64(fields[3]),
                let type = unescape(fields[4])
            else { return nil }
            var metadata: [String: String] = [:]
            var data: [UInt8]?
            var prefix: StoredPrefix?
            for pair in fields.dropFirst(5) {
                if pair.hasPrefix(":") {
                    guard data == nil, let bytes = unhex(pair.utf8.dropFirst()) else { return nil }
                    data = bytes
                    continue
                }
                if pair.hasPrefix("@") {
                    let parts = pair.dropFirst().split(separator: ",", maxSplits: 2, omittingEmptySubsequences: false)
                    guard prefix == nil, parts.count == 3, let length = Int64(parts[0]),
                        let objectSize = Int64(parts[1]),
                        let etag = unescape(String(parts[2]))
                    else { return nil }
                    prefix = StoredPrefix(length: length, etag: etag, objectSize: objectSize)
                    continue
                }
                guard let eq = pair.firstIndex(of: "="), let name = unescape(String(pair[..<eq])),
                    let value = unescape(String(pair[pair.index(after: eq)...]))
                else { return nil }
                metadata[name] = value
            }
            if let data, data.count != size { return nil }
            return .put(
                Entry(
                    file: file, key: key, size: size, contentType: type.isEmpty ? nil : type, metadata: metadata,
                    data: data, storedPrefix: prefix))
        default:
            return nil
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex(_ bytes: [UInt8]) -> String {
        String(unsafeUninitializedCapacity: bytes.count * 2) { out in
            for (i, b) in bytes.enumerated() {
                out[2 * i] = hexDigits[Int(b >> 4)]
                out[2 * i + 1] = hexDigits[Int(b & 15)]
            }
            return bytes.count * 2
        }
    }

    static func unhex(_ text: Substring.UTF8View) -> [UInt8]? {
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            default: nil
            }
        }
        guard text.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count / 2)
        var i = text.startIndex
        while i != text.endIndex {
            let j = text.index(after: i)
            guard let high = value(text[i]), let low = value(text[j]) else { return nil }
            out.append(high << 4 | low)
            i = text.index(after: j)
        }
        return out
    }

    /// `%`, tab, newline (and `extra`) as `%XX`.
    static func escape(_ text: String, also extra: Character? = nil) -> String {
        var out = ""
        for c in text.unicodeScalars {
            if c == "%" || c == "\t" || c == "\n" || c == "\r" || Character(c) == extra {
                let hex = String(c.value, radix: 16, uppercase: true)
                out += "%" + (hex.count < 2 ? "0" : "") + hex
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func unescape(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let b = utf8.popFirst() {
            if b == UInt8(ascii: "%") {
                guard utf8.count >= 2, let v = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) else {
                    return nil
                }
                bytes.append(v)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// The names in `directory` (without `.` and `..`).
func listDirectory(_ directory: String) throws(FSError) -> [String] {
    guard let dir = opendir(directory) else { throw FSError(errno, "cannot read \(directory)") }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Everything left to read from `fd`.
func readAll(_ fd: Int32) -> [UInt8] {
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// Makes the directory's entries (a rename, a new file) durable.
func syncDirectory(_ directory: String) {
    let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 {
        fsync(fd)
        close(fd)
    }
}
