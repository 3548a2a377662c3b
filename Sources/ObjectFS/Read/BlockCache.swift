// BlockCache: fixed-size blocks of stored object versions, kept locally so that no byte is
// fetched twice. Blocks are named by (object key, ETag, size, block index): a changed object
// has another ETag, so its old blocks are never served; they age out of the LRU.
// `DiskBlockCache` keeps them under the cache directory across remounts; `MemoryBlockCache` is
// the small in-memory form used when the disk cache is off (`--cache-size 0`).

import ObjectStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The cache's name for one stored version of an object.
public struct CachedObject: Sendable, Hashable {
    /// 32 hex digits, from `identity`.
    public let name: String
    /// Key, ETag and size: stored in every block file's header and compared on read.
    let identity: [UInt8]
    public let size: Int64

    init(_ version: ObjectVersion) {
        var identity = Array(version.key.utf8)
        identity.append(0)
        identity += Array((version.etag?.value ?? "").utf8)
        identity.append(0)
        identity += Array(String(version.size).utf8)
        self.identity = identity
        self.name = Checksum.name(identity)
        self.size = version.size
    }

    public static func == (lhs: CachedObject, rhs: CachedObject) -> Bool { lhs.identity == rhs.identity }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }
}

struct BlockID: Hashable, Sendable {
    let object: String
    let index: Int64
}

protocol BlockCache: Sendable {
    var blockSize: Int64 { get }
    /// Whether the block is there (it may still turn out damaged when read).
    func contains(_ object: CachedObject, block: Int64) -> Bool
    /// `count` bytes from `from` inside the block, or `nil` when it is not cached — or was
    /// damaged, in which case it is dropped and the caller fetches it again.
    func read(_ object: CachedObject, block: Int64, from: Int, count: Int) async -> [UInt8]?
    /// Fills `buffer` with the block's bytes from `from` when they can be had without waiting
    /// on a disk or a lock held across I/O; false: use `read` (which also deals with damage).
    func readImmediately(_ object: CachedObject, block: Int64, from: Int, into buffer: UnsafeMutableRawBufferPointer)
        -> Bool
    /// Keeps a whole block (the last one of an object may be short). Never fails: a block that
    /// cannot be kept (full disk) is simply not cached.
    func store(_ object: CachedObject, block: Int64, data: ArraySlice<UInt8>) async
    /// A reader had the block's bytes from its fetch rather than from the cache.
    func noteRead(_ object: CachedObject, block: Int64)
    /// Starts a block that arrives in pieces, written as they come; `nil` when this cache takes
    /// whole blocks only, has the block already, or has no room for it.
    func begin(_ object: CachedObject, block: Int64) async -> BlockWriter?
    /// Bytes the cache may hold.
    var capacity: Int64 { get }
    /// Bytes it holds now.
    var usedBytes: Int64 { get }
    /// Gets a cached block ready for reads that do not wait: opened, checked, its data on its
    /// way into the page cache (a randomly read file whose blocks are on disk only, after a
    /// remount). Returns false when the block is not cached (or turned out damaged).
    func warm(_ object: CachedObject, block: Int64) async -> Bool
    /// How many blocks `warm` can keep ready at once.
    var warmLimit: Int { get }
}

extension BlockCache {
    func noteRead(_ object: CachedObject, block: Int64) {}

    /// The length of block `index` of an object of `size` bytes.
    func length(of index: Int64, in size: Int64) -> Int {
        Int(max(0, min(blockSize, size - index * blockSize)))
    }
}

/// Blocks in memory (`--cache-size 0`, or no usable cache directory). Blocks stored and not
/// read since are dropped last, and read-ahead only starts when half the cache has room for what
/// it fetches beside them (`promise`; Prefetcher.windowLimit shrinks the windows to fit), so its
/// blocks are still here when their reader comes. Blocks their reader will not read any more
/// (it jumped or closed the file) count as read (`giveUp`); so does any block nobody read while
/// eight times as many blocks as the cache holds were stored after it. Otherwise the least
/// recently used goes first.
final class MemoryBlockCache: BlockCache {
    let blockSize: Int64
    let capacity: Int64
    private struct Entry {
        var data: [UInt8]
        var tick: UInt64
        var unread: Bool
        /// `State.stores` when it was stored.
        var stored: UInt64
    }
    private struct State {
        var blocks: [BlockID: Entry] = [:]
        var bytes: Int64 = 0
        var unreadBytes: Int64 = 0
        /// Room set aside for read-ahead in flight (`promise`).
        var promised: Int64 = 0
        var tick: UInt64 = 0
        var stores: UInt64 = 0

        /// The entry of `id`, marked as read now.
        mutating func touch(_ id: BlockID) -> Entry? {
            guard blocks[id] != nil else { return nil }
            tick += 1
            blocks[id]!.tick = tick
            markRead(id)
            return blocks[id]
        }

        /// Counts the block as read (its room no longer held for a reader to come).
        mutating func markRead(_ id: BlockID) {
            guard let entry = blocks[id], entry.unread else { return }
            blocks[id]!.unread = false
            unreadBytes -= Int64(entry.data.count)
        }

        mutating func remove(_ id: BlockID) {
            guard let old = blocks.removeValue(forKey: id) else { return }
            bytes -= Int64(old.data.count)
            if old.unread { unreadBytes -= Int64(old.data.count) }
        }
    }
    private let state = Mutex(State())

    init(blockSize: Int64, capacity: Int64) {
        self.blockSize = blockSize
        self.capacity = capacity
    }

    func contains(_ object: CachedObject, block: Int64) -> Bool {
        state.withLock { $0.blocks[BlockID(object: object.name, index: block)] != nil }
    }

    func read(_ object: CachedObject, block: Int64, from: Int, count: Int) async -> [UInt8]? {
        state.withLock { s -> [UInt8]? in
            guard let entry = s.touch(BlockID(object: object.name, index: block)) else { return nil }
            let end = min(entry.data.count, from + count)
            return from < end ? Array(entry.data[from..<end]) : []
        }
    }

    func readImmediately(_ object: CachedObject, block: Int64, from: Int, into buffer: UnsafeMutableRawBufferPointer)
        -> Bool
    {
        state.withLock { s -> Bool in
            let id = BlockID(object: object.name, index: block)
            guard let size = s.blocks[id]?.data.count, from + buffer.count <= size, let entry = s.touch(id) else {
                return false
            }
            entry.data.withUnsafeBytes {
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[from..<(from + buffer.count)]))
            }
            return true
        }
    }

    func begin(_ object: CachedObject, block: Int64) async -> BlockWriter? { nil }

    var usedBytes: Int64 { state.withLock { $0.bytes } }

    /// Blocks in memory are ready.
    func warm(_ object: CachedObject, block: Int64) async -> Bool { contains(object, block: block) }
    var warmLimit: Int { Int.max }

    func noteRead(_ object: CachedObject, block: Int64) {
        state.withLock { _ = $0.touch(BlockID(object: object.name, index: block)) }
    }

    /// Blocks fetched ahead that their reader will not read (it jumped or left): they count
    /// as read, as recently used as when they were stored.
    func giveUp(_ object: CachedObject, blocks: Range<Int64>) {
        state.withLock { s in
            for index in blocks {
                let id = BlockID(object: object.name, index: index)
                s.markRead(id)
            }
        }
    }

    func store(_ object: CachedObject, block: Int64, data slice: ArraySlice<UInt8>) async {
        let data = Array(slice)
        guard Int64(data.count) <= capacity else { return }
        // Eight turns: a reader that other readers outpaced for a while still finds its blocks.
        let held = 8 * UInt64(max(1, capacity / blockSize))
        state.withLock { s in
            let id = BlockID(object: object.name, index: block)
            s.remove(id)
            // Blocks nobody came for while the cache turned over eight times: their reader is
            // gone (a reader of a file replaced since, or one that left another way).
            s.stores += 1
            for (key, entry) in s.blocks where entry.unread && s.stores - entry.stored > held {
                s.markRead(key)
            }
            while s.bytes + Int64(data.count) > capacity,
                let oldest = s.blocks.min(by: { a, b in
                    a.value.unread == b.value.unread ? a.value.tick < b.value.tick : !a.value.unread
                })
            {
                s.remove(oldest.key)
            }
            s.tick += 1
            s.blocks[id] = Entry(data: data, tick: s.tick, unread: true, stored: s.stores)
            s.bytes += Int64(data.count)
            s.unreadBytes += Int64(data.count)
        }
    }

    /// Room for read-ahead: half of the capacity, less the blocks not read yet and the room
    /// promised to fetches in flight. The other half keeps blocks being read (a block is read
    /// in several requests) and the blocks reads waited for.
    var roomAhead: Int64 { state.withLock { capacity / 2 - $0.unreadBytes - $0.promised } }

    /// Sets room aside for `bytes` of read-ahead: false when `roomAhead` is less. Given back
    /// with `release` when the fetch ends.
    func promise(_ bytes: Int64) -> Bool {
        state.withLock { s in
            guard s.unreadBytes + s.promised + bytes <= capacity / 2 else { return false }
            s.promised += bytes
            return true
        }
    }

    func release(promised bytes: Int64) { state.withLock { $0.promised -= bytes } }
}

/// Blocks in files under a directory, bounded in bytes (LRU) and by a floor of free space on its
/// filesystem, kept across remounts. One mount owns a directory at a time (a lock file).
final class DiskBlockCache: BlockCache {
    let blockSize: Int64
    let capacity: Int64
    let freeSpaceFloor: Int64
    let directory: String
    private let io: BlockingIOPool
    private let lockFD: Int32

    private struct Entry {
        var bytes: Int64
        var tick: UInt64
    }
    private struct State {
        var entries: [BlockID: Entry] = [:]
        /// Bytes of the files in `entries` plus those being written.
        var bytes: Int64 = 0
        var tick: UInt64 = 0
        var serial: UInt64 = 0
        /// Verified block files kept open, most recently used last.
        var open: [BlockID: (block: OpenBlock, tick: UInt64)] = [:]
    }
    private let state = Mutex(State())

    /// What a directory's files take beyond their blocks (the directory itself, the lock file).
    static let overhead: Int64 = 64 << 10

    struct Busy: Error, CustomStringConvertible {
        let directory: String
        var description: String { "the block cache \(directory) is in use by another mount" }
    }

    /// Opens (or creates) the cache in `directory`, reading what an earlier mount left there.
    /// Throws `Busy` when another process holds it, or the errno of what failed.
    init(
        directory: String, blockSize: Int64, capacity: Int64, freeSpaceFloor: Int64,
        io: BlockingIOPool = .shared
    ) throws(FSError) {
        self.directory = directory
        self.blockSize = blockSize
        self.capacity = capacity
        self.freeSpaceFloor = freeSpaceFloor
        self.io = io
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw FSError(errno, "cannot create the block cache \(directory)")
        }
        let fd = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FSError(errno, "cannot open \(directory)/lock") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw FSError(EBUSY, Busy(directory: directory).description)
        }
        lockFD = fd
        loadIndex()
    }

    deinit { close(lockFD) }

    /// The directory under `cacheDirectory` for the blocks of one remote (`identity`: where its
    /// data lives — server, account, bucket — never a secret).
    static func directory(under cacheDirectory: String, for identity: String) -> String {
        "\(cacheDirectory)/blocks-\(Checksum.name(Array(identity.utf8)).prefix(16))"
    }

    static func fileBytes(_ length: Int) -> Int64 { Int64((length + 4095) & ~4095) }

    func path(_ id: BlockID) -> String { "\(directory)/\(id.object).\(id.index)" }

    /// Reads the names and sizes of the files an earlier mount kept, oldest first; removes
    /// temporary files a crash left behind; trims to the capacity.
    private func loadIndex() {
        guard let names = try? listDirectory(directory) else { return }
        var found: [(BlockID, Int64, Int64)] = []
        for name in names where name != "lock" {
            let full = directory + "/" + name
            let parts = name.split(separator: ".")
            guard parts.count == 2, parts[0].utf8.count == 32, let index = Int64(parts[1]) else {
                unlink(full)  // temporary files of an interrupted write, and strays
                continue
            }
            var st = stat()
            guard stat(full, &st) == 0 else { continue }
            found.append(
                (BlockID(object: String(parts[0]), index: index), Int64(st.st_blocks) * 512, Int64(st.st_mtim.tv_sec)))
        }
        found.sort { $0.2 < $1.2 }
        let victims = state.withLock { s -> [BlockID] in
            for (id, bytes, _) in found {
                s.tick += 1
                s.entries[id] = Entry(bytes: bytes, tick: s.tick)
                s.bytes += bytes
            }
            return evict(&s, toFit: 0)
        }
        for id in victims { unlink(path(id)) }
    }

    /// Takes least recently used entries out of the index until `extra` more bytes fit below
    /// the capacity (with some room to spare, so eviction is not done block by block); the
    /// caller removes their files.
    private func evict(_ s: inout State, toFit extra: Int64) -> [BlockID] {
        let limit = capacity - Self.overhead
        guard s.bytes + extra > limit else { return [] }
        let target = max(0, limit - extra - capacity / 16)
        var victims: [BlockID] = []
        for (id, entry) in s.entries.sorted(by: { $0.value.tick < $1.value.tick }) {
            if s.bytes <= target { break }
            s.entries[id] = nil
            s.open[id] = nil
            s.bytes -= entry.bytes
            victims.append(id)
        }
        return victims
    }

    /// Takes the least recently used entries out of the index until `bytes` are freed.
    private func evict(_ s: inout State, bytes: Int64) -> [BlockID] {
        var freed: Int64 = 0
        var victims: [BlockID] = []
        for (id, entry) in s.entries.sorted(by: { $0.value.tick < $1.value.tick }) {
            if freed >= bytes { break }
            s.entries[id] = nil
            s.open[id] = nil
            s.bytes -= entry.bytes
            freed += entry.bytes
            victims.append(id)
        }
        return victims
    }

    func contains(_ object: CachedObject, block: Int64) -> Bool {
        state.withLock { $0.entries[BlockID(object: object.name, index: block)] != nil }
    }

    func read(_ object: CachedObject, block: Int64, from: Int, count: Int) async -> [UInt8]? {
        let id = BlockID(object: object.name, index: block)
        let (known, opened) = state.withLock { s -> (Bool, OpenBlock?) in
            guard s.entries[id] != nil else { return (false, nil) }
            s.tick += 1
            s.entries[id]!.tick = s.tick
            s.open[id]?.tick = s.tick
            return (true, s.open[id]?.block)
        }
        guard known else { return nil }
        // The usual case: the file is open and its pages are in the page cache — read it here,
        // without waiting for an I/O thread; anything that would wait on the disk goes there.
        if let opened {
            switch opened.read(from: from, count: count, nowait: true) {
            case .bytes(let bytes): return bytes
            case .damaged: return await drop(id)
            case .wouldBlock: break
            }
        }
        let layout = self.layout(object, block)
        let path = self.path(id)
        let result = await io.run { () -> (OpenBlock.Outcome, OpenBlock?) in
            guard let block = opened ?? OpenBlock(path: path, layout: layout) else { return (.damaged, nil) }
            return (block.read(from: from, count: count, nowait: false), block)
        }
        switch result {
        case (.bytes(let bytes), let block?):
            if opened == nil { keepOpen(id, block) }
            return bytes
        default:
            return await drop(id)
        }
    }

    /// How block `block` of `object` lies on disk.
    private func layout(_ object: CachedObject, _ block: Int64) -> BlockFile.Layout {
        BlockFile.Layout(identity: object.identity, dataLength: length(of: block, in: object.size))
    }

    func warm(_ object: CachedObject, block: Int64) async -> Bool {
        let id = BlockID(object: object.name, index: block)
        let (known, opened) = state.withLock { s in (s.entries[id] != nil, s.open[id] != nil) }
        guard known else { return false }
        if opened { return true }
        let layout = self.layout(object, block)
        let path = self.path(id)
        // Opening checks the header and starts reading the data in (OpenBlock's WILLNEED).
        guard let block = await io.run({ OpenBlock(path: path, layout: layout) }) else {
            _ = await drop(id)
            return false
        }
        keepOpen(id, block)
        return true
    }

    /// Half the blocks kept open: warming never pushes out what it just made ready.
    var warmLimit: Int { Self.openLimit / 2 }

    func readImmediately(_ object: CachedObject, block: Int64, from: Int, into buffer: UnsafeMutableRawBufferPointer)
        -> Bool
    {
        let id = BlockID(object: object.name, index: block)
        let opened = state.withLock { s -> OpenBlock? in
            guard s.entries[id] != nil, s.open[id] != nil else { return nil }
            s.tick += 1
            s.entries[id]!.tick = s.tick
            s.open[id]!.tick = s.tick
            return s.open[id]!.block
        }
        guard let opened, from + buffer.count <= opened.layout.dataLength else { return false }
        return opened.read(from: from, into: buffer, nowait: true) == .done
    }

    /// Damaged or gone: forget the block, remove its file, let the caller fetch it again.
    private func drop(_ id: BlockID) async -> [UInt8]? {
        let dropped = state.withLock { s -> Bool in
            s.open[id] = nil
            guard let entry = s.entries.removeValue(forKey: id) else { return false }
            s.bytes -= entry.bytes
            return true
        }
        let path = self.path(id)
        if dropped { await io.run { _ = unlink(path) } }
        return nil
    }

    /// Keeps a verified block file open for the next reads, at most `openLimit` of them.
    fileprivate func keepOpen(_ id: BlockID, _ block: OpenBlock) {
        // A block's descriptor closes when the last reader lets go of it (OpenBlock's deinit):
        // for those let go here, when `closing` goes away, outside the lock.
        var closing: [OpenBlock] = []
        state.withLock { s in
            guard s.entries[id] != nil else { return }
            s.tick += 1
            s.open[id] = (block, s.tick)
            if s.open.count > Self.openLimit {
                for (victim, _) in s.open.sorted(by: { $0.value.tick < $1.value.tick }).prefix(Self.openLimit / 4) {
                    if let v = s.open.removeValue(forKey: victim) { closing.append(v.block) }
                }
            }
        }
        _ = closing
    }

    /// Block files kept open (with their verified headers) for reads: a quarter of the
    /// process's descriptor limit, between 64 and 2,048 (2 GiB of 1 MiB blocks, ~1.5 MiB of
    /// headers). Random reads over a file with more blocks than this reopen a file and read its
    /// header again for most reads (measured on a 1 GiB file after a remount: 14,800 IOPS with
    /// 128 open, 51,600 with 512, 166,000 with 2,048; doc/BENCHMARKS.md).
    static let openLimit: Int = {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 64 }
        return Int(min(2048, max(64, limit.rlim_cur / 4)))
    }()

    fileprivate static func writeFully(_ fd: Int32, _ raw: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        var done = 0
        while done < raw.count {
            let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            done += n
        }
        return true
    }

    func store(_ object: CachedObject, block: Int64, data: ArraySlice<UInt8>) async {
        guard data.count == length(of: block, in: object.size), let writer = await begin(object, block: block) else {
            return
        }
        data.withUnsafeBytes { writer.append($0) }
        if await !writer.commit() { _ = await writer.abandon() }
    }

    func begin(_ object: CachedObject, block: Int64) async -> BlockWriter? {
        let id = BlockID(object: object.name, index: block)
        let layout = self.layout(object, block)
        let bytes = Self.fileBytes(layout.fileLength)
        guard bytes <= capacity - Self.overhead else { return nil }
        let (fits, serial, victims) = state.withLock { s -> (Bool, UInt64, [BlockID]) in
            if s.entries[id] != nil { return (false, 0, []) }
            let victims = evict(&s, toFit: bytes)
            s.bytes += bytes  // counted while being written
            s.serial += 1
            return (true, s.serial, victims)
        }
        guard fits else { return nil }
        let temporary = "\(path(id)).\(serial).tmp"
        let directory = self.directory
        let floor = freeSpaceFloor
        let fd = await io.run { () -> Int32 in
            for victim in victims { unlink("\(directory)/\(victim.object).\(victim.index)") }
            var fs = statvfs()
            if statvfs(directory, &fs) == 0, Int64(fs.f_bavail) * Int64(fs.f_frsize) - bytes < floor { return -1 }
            return open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        }
        guard fd >= 0 else {
            await failed(id, bytes: bytes)
            return nil
        }
        return BlockWriter(cache: self, id: id, layout: layout, bytes: bytes, temporary: temporary, fd: fd)
    }

    /// A block's file is in place (`ok`), or its writing was given up: the index says so.
    fileprivate func account(_ id: BlockID, bytes: Int64, ok: Bool) {
        state.withLock { s in
            if ok {
                s.open[id] = nil  // a file it replaced
                s.tick += 1
                // Two writers of one block: the second file replaced the first.
                if let old = s.entries.updateValue(Entry(bytes: bytes, tick: s.tick), forKey: id) {
                    s.bytes -= old.bytes
                }
            } else {
                s.bytes -= bytes
            }
        }
    }

    /// A block could not be written (no room, a failed write): make room as well.
    fileprivate func failed(_ id: BlockID, bytes: Int64) async {
        account(id, bytes: bytes, ok: false)
        await makeRoom()
    }

    fileprivate var ioPool: BlockingIOPool { io }

    /// Below the free-space floor (or a write failed): give back the least recently used
    /// eighth of the cache, so that the filesystem keeps its floor.
    private func makeRoom() async {
        let victims = state.withLock { s in evict(&s, bytes: max(blockSize, s.bytes / 8)) }
        guard !victims.isEmpty else { return }
        let directory = self.directory
        await io.run { for v in victims { unlink("\(directory)/\(v.object).\(v.index)") } }
    }

    /// Bytes held (for status and tests).
    var usedBytes: Int64 { state.withLock { $0.bytes } }
}

/// An open, verified block file: its descriptor (closed when the last reader lets go) and the
/// checksums of its sectors, read once from its header.
final class OpenBlock: @unchecked Sendable {
    enum Outcome {
        case bytes([UInt8])
        /// The data is not in the page cache (only with `nowait`).
        case wouldBlock
        /// Short, or a sector fails its checksum.
        case damaged
    }

    let fd: Int32
    let layout: BlockFile.Layout
    let sums: [UInt64]

    /// A block file just written through `fd` (open for reading), whose checksums are known.
    init(written fd: Int32, layout: BlockFile.Layout, sums: [UInt64]) {
        self.fd = fd
        self.layout = layout
        self.sums = sums
    }

    /// Opens and checks the file; `nil` when it is missing, of the wrong length or its header
    /// is not the one expected.
    init?(path: String, layout: BlockFile.Layout) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        var header = [UInt8](repeating: 0, count: layout.headerLength)
        guard fstat(fd, &st) == 0, Int(st.st_size) == layout.fileLength,
            header.withUnsafeMutableBytes({ Self.read(fd, $0, at: 0, nowait: false) }) == .done,
            let sums = header.withUnsafeBytes({ BlockFile.sectorChecksums(header: $0, layout) })
        else {
            close(fd)
            return nil
        }
        // Its readers come next, at any offset: the whole block is read in now, in a few large
        // requests, instead of a 16 KiB disk read per read (on this kind of VM each disk
        // request costs a VM exit: 12,000 random 4 KiB reads/s from a cache on disk).
        _ = posix_fadvise(fd, off_t(layout.dataOffset), off_t(layout.dataLength), POSIX_FADV_WILLNEED)
        self.fd = fd
        self.layout = layout
        self.sums = sums
    }

    deinit { close(fd) }

    /// `count` bytes from `from` of the block's data, each 16 KiB sector they touch checked.
    func read(from: Int, count: Int, nowait: Bool) -> Outcome {
        let n = max(0, min(layout.dataLength, from + count) - from)
        var bytes = [UInt8](unsafeUninitializedCapacity: n) { _, k in k = n }
        switch bytes.withUnsafeMutableBytes({ read(from: from, into: $0, nowait: nowait) }) {
        case .done: return .bytes(bytes)
        case .wouldBlock: return .wouldBlock
        case .failed: return .damaged
        }
    }

    /// Fills `buffer` (which must lie inside the block) with the data from `from`, each 16 KiB
    /// sector it touches checked; `.failed`: short or damaged.
    func read(from: Int, into buffer: UnsafeMutableRawBufferPointer, nowait: Bool) -> ReadResult {
        let end = from + buffer.count
        guard from < end else { return .done }
        guard end <= layout.dataLength else { return .failed }
        let first = from / BlockFile.sectorSize
        let last = (end - 1) / BlockFile.sectorSize
        let spanStart = first * BlockFile.sectorSize
        let spanEnd = min(layout.dataLength, (last + 1) * BlockFile.sectorSize)
        func check(_ span: UnsafeRawBufferPointer) -> Bool {
            for s in first...last {
                let a = s * BlockFile.sectorSize - spanStart
                let b = min(span.count, a + BlockFile.sectorSize)
                if SectorSum.of(UnsafeRawBufferPointer(rebasing: span[a..<b])) != sums[s] { return false }
            }
            return true
        }
        // A read of whole sectors (the kernel's 128 KiB – 1 MiB requests) lands in place.
        if from == spanStart && end == spanEnd {
            let got = Self.read(fd, buffer, at: layout.dataOffset + spanStart, nowait: nowait)
            return got == .done && !check(UnsafeRawBufferPointer(buffer)) ? .failed : got
        }
        let span = UnsafeMutableRawBufferPointer.allocate(byteCount: spanEnd - spanStart, alignment: 16)
        defer { span.deallocate() }
        let got = Self.read(fd, span, at: layout.dataOffset + spanStart, nowait: nowait)
        guard got == .done else { return got }
        guard check(UnsafeRawBufferPointer(span)) else { return .failed }
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: span[(from - spanStart)..<(end - spanStart)]))
        return .done
    }

    enum ReadResult { case done, wouldBlock, failed }

    /// Fills `buffer` from `offset`. With `nowait`, only from the page cache (preadv2 with
    /// RWF_NOWAIT), `.wouldBlock` otherwise.
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: Int, nowait: Bool) -> ReadResult {
        var done = 0
        while done < buffer.count {
            let n: Int
            if nowait {
                guard let preadv2 = Self.preadv2 else { return .wouldBlock }
                var iov = iovec(iov_base: buffer.baseAddress! + done, iov_len: buffer.count - done)
                n = preadv2(fd, &iov, 1, off_t(offset + done), Self.rwfNoWait)
                if n < 0 && (errno == EAGAIN || errno == EOPNOTSUPP) { return .wouldBlock }
            } else {
                n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return .failed }
            done += n
        }
        return .done
    }

    private typealias PReadV2 = @convention(c) (Int32, UnsafePointer<iovec>?, Int32, off_t, Int32) -> Int
    /// glibc has preadv2 (2.26+), but its header hides it from Swift: found at run time.
    private static let preadv2: PReadV2? = dlsym(nil, "preadv2").map { unsafeBitCast($0, to: PReadV2.self) }
    private static let rwfNoWait: Int32 = 0x8
}

/// One block of the disk cache being written as its bytes arrive (a streamed GET): the data
/// goes to a temporary file at its final place, in writes of whole sectors whose checksums are
/// taken on the way; `commit` writes the last ones and the header and renames the file into
/// place, in one trip to an I/O thread. Only what has
/// not been written yet (under `flushSize`) is held in memory. Used by one task at a time.
final class BlockWriter: @unchecked Sendable {
    static let flushSize = 256 << 10
    /// What a writer holds in memory at most: a flush's worth and a network read (NIO's reads
    /// are at most 64 KiB); a larger append grows it.
    static let bufferSize = flushSize + (64 << 10)

    private let cache: DiskBlockCache
    let id: BlockID
    let layout: BlockFile.Layout
    private let bytes: Int64
    private let temporary: String
    private let fd: Int32
    /// Bytes received and not written yet: `buffered` of them at the start of `buffer`, which
    /// is allocated once (`bufferSize`) and grows only for a larger append.
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var written = 0
    private var sums: [UInt64] = []
    private var failed = false
    private var closed = false

    fileprivate init(
        cache: DiskBlockCache, id: BlockID, layout: BlockFile.Layout, bytes: Int64, temporary: String, fd: Int32
    ) {
        self.cache = cache
        self.id = id
        self.layout = layout
        self.bytes = bytes
        self.temporary = temporary
        self.fd = fd
        buffer = .allocate(
            byteCount: min(layout.dataLength, Self.bufferSize), alignment: 16)
    }

    deinit {
        // Neither committed nor abandoned (a task that went away): forget it.
        if !closed {
            close(fd)
            unlink(temporary)
            cache.account(id, bytes: bytes, ok: false)
        }
        buffer.deallocate()
    }

    /// Bytes of the block received so far.
    var count: Int { written + buffered }
    var needsFlush: Bool { buffered >= Self.flushSize }

    func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= layout.dataLength, "more bytes than the block holds")
        guard !bytes.isEmpty else { return }
        if buffered + bytes.count > buffer.count {
            let larger = UnsafeMutableRawBufferPointer.allocate(
                byteCount: max(buffered + bytes.count, 2 * buffer.count), alignment: 16)
            larger.baseAddress!.copyMemory(from: buffer.baseAddress!, byteCount: buffered)
            buffer.deallocate()
            buffer = larger
        }
        (buffer.baseAddress! + buffered).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        buffered += bytes.count
    }

    /// The buffered bytes.
    private var pending: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<buffered]) }

    /// Writes the whole sectors buffered (the rest of a complete block goes with `commit`).
    func flush() async {
        let n = buffered / BlockFile.sectorSize * BlockFile.sectorSize
        guard n > 0, !failed else { return }
        // The buffer stays put while the I/O thread writes from it: nothing appends before
        // this returns (RunSink's drain awaits it), and the writer outlives the call.
        let (fd, at, chunk) = (self.fd, layout.dataOffset + written, Borrowed(UnsafeRawBufferPointer(buffer)[0..<n]))
        guard let newSums = await cache.ioPool.run({ Self.write(chunk.bytes, to: fd, at: at) }) else {
            failed = true  // what is buffered stays, for `abandon`
            return
        }
        sums += newSums
        written += n
        // What is left (less than a sector) moves to the front.
        if buffered > n { memmove(buffer.baseAddress!, buffer.baseAddress! + n, buffered - n) }
        buffered -= n
    }

    /// Writes `bytes` (whole sectors from a sector's start, or the block's last ones) at `at`
    /// and returns their sectors' checksums; `nil` if the write failed. On an I/O thread.
    private static func write(_ bytes: UnsafeRawBufferPointer, to fd: Int32, at: Int) -> [UInt64]? {
        DiskBlockCache.writeFully(fd, bytes, at: at) ? BlockFile.sectorSums(bytes) : nil
    }

    /// Bytes that stay valid while an I/O thread uses them (see `flush`).
    private struct Borrowed: @unchecked Sendable {
        let bytes: UnsafeRawBufferPointer
        init(_ slice: Slice<UnsafeRawBufferPointer>) { bytes = UnsafeRawBufferPointer(rebasing: slice) }
    }

    /// Puts the complete block in place; false: it could not be written (the caller may take
    /// its bytes back with `abandon`).
    func commit() async -> Bool {
        guard count == layout.dataLength, !failed else { return false }
        // The rest of the data, the header and the rename: one trip to an I/O thread.
        let (fd, at, chunk) = (
            self.fd, layout.dataOffset + written, Borrowed(UnsafeRawBufferPointer(buffer)[0..<buffered])
        )
        let (layout, earlier, temporary, final) = (self.layout, sums, self.temporary, cache.path(id))
        let all = await cache.ioPool.run { () -> [UInt64]? in
            guard let last = Self.write(chunk.bytes, to: fd, at: at) else { return nil }
            let all = earlier + last
            let header = BlockFile.header(layout, sums: all)
            guard header.withUnsafeBytes({ DiskBlockCache.writeFully(fd, $0, at: 0) }), rename(temporary, final) == 0
            else { return nil }
            return all
        }
        guard let all else {
            failed = true  // `abandon` makes room
            return false
        }
        sums = all
        written += buffered
        buffered = 0
        closed = true
        cache.account(id, bytes: bytes, ok: true)
        // Its readers come next: the file stays open for them, its checksums known.
        cache.keepOpen(id, OpenBlock(written: fd, layout: layout, sums: sums))
        return true
    }

    /// Gives the block up: its temporary file goes; returns the bytes received (read back from
    /// the file where they were written already).
    func abandon() async -> [UInt8] {
        guard !closed else { return [] }
        closed = true
        let (fd, temporary, at, n, rest) = (self.fd, self.temporary, layout.dataOffset, written, Array(pending))
        let back = await cache.ioPool.run { () -> [UInt8] in
            var data = [UInt8](repeating: 0, count: n)
            let ok = data.withUnsafeMutableBytes { OpenBlock.read(fd, $0, at: at, nowait: false) == .done }
            close(fd)
            unlink(temporary)
            return ok ? data + rest : []
        }
        buffered = 0
        if failed { await cache.failed(id, bytes: bytes) } else { cache.account(id, bytes: bytes, ok: false) }
        return back
    }
}
