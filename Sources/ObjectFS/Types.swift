import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

public typealias InodeNumber = UInt64

/// The inode number of the mount's root directory (FUSE_ROOT_ID).
public let rootInode: InodeNumber = 1

public enum FileKind: Sendable, Hashable {
    case file
    case directory
    /// A symbolic link: an object whose body is the target (s3fs's convention, doc/SEMANTICS.md).
    case symlink
}

/// What `stat` shows for one inode. `mode` holds the permission bits only (07777).
public struct FileAttributes: Sendable, Hashable {
    public var ino: InodeNumber
    public var kind: FileKind
    public var size: Int64
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Timestamp
    /// How much longer these attributes (and the name that led to them) are trusted, in
    /// seconds: the rest of the metadata TTL since the server was last asked, the whole TTL for
    /// a file this mount holds (open, unsaved, not stored yet), 0 for attributes a listing
    /// only approximated. Not part of equality.
    public var trustedFor: Double = 0
    public var nlink: UInt32 { kind == .directory ? 2 : 1 }

    public static func == (a: FileAttributes, b: FileAttributes) -> Bool {
        a.ino == b.ino && a.kind == b.kind && a.size == b.size && a.mode == b.mode && a.uid == b.uid
            && a.gid == b.gid && a.mtime == b.mtime
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ino)
        hasher.combine(mtime)
        hasher.combine(size)
    }
}

extension FileKind {
    /// Whether entries of this kind are one object each (files and symlinks), as opposed to a
    /// directory, which is a prefix (and maybe a marker).
    public var isObject: Bool { self != .directory }
}

/// A name in a directory with the inode it resolves to.
public struct DirectoryEntry: Sendable, Hashable {
    public var name: String
    public var attributes: FileAttributes
    /// False when mtime/mode are the listing's approximation (its metadata was not read yet):
    /// such attributes must not be cached by the kernel, so that `stat` asks again.
    public var attributesComplete: Bool = true
    /// False when the listing cannot tell a small file from a symlink or a Swift-style directory
    /// marker (S3 listings carry no content type or metadata): the kernel must look the name
    /// up before it learns the entry's type.
    public var kindKnown: Bool = true
    public var ino: InodeNumber { attributes.ino }
}

/// A change requested by `setattr` (truncate, chmod, chown, utimes).
public struct AttributeChanges: Sendable, Hashable {
    public enum TimeChange: Sendable, Hashable {
        case now
        case set(Timestamp)
    }
    public var size: Int64?
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var mtime: TimeChange?
    public init(
        size: Int64? = nil, mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil,
        mtime: TimeChange? = nil
    ) {
        self.size = size
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.mtime = mtime
    }
}

public struct FilesystemStatistics: Sendable, Hashable {
    public var blockSize: UInt64
    public var totalBlocks: UInt64
    public var freeBlocks: UInt64
    public var totalFiles: UInt64
    public var freeFiles: UInt64
    public var maximumNameLength: UInt64
}

/// The access mode and flags of `open`/`create` that ObjectFS acts on.
public struct OpenFlags: Sendable, Hashable {
    public var write: Bool
    public var read: Bool
    public var truncate: Bool
    public var append: Bool
    public var exclusive: Bool
    public init(posix flags: Int32) {
        let acc = flags & O_ACCMODE
        read = acc == O_RDONLY || acc == O_RDWR
        write = acc == O_WRONLY || acc == O_RDWR
        truncate = flags & O_TRUNC != 0
        append = flags & O_APPEND != 0
        exclusive = flags & O_EXCL != 0
    }
    public static let readOnly = OpenFlags(posix: O_RDONLY)
    public static let writeOnly = OpenFlags(posix: O_WRONLY)
    public static let readWrite = OpenFlags(posix: O_RDWR)
}

/// An error with the errno the caller sees, made where the cause is known.
public struct FSError: Error, Hashable, Sendable, CustomStringConvertible {
    public var errno: Int32
    public var message: String
    public init(_ errno: Int32, _ message: String) {
        self.errno = errno
        self.message = message
    }
    public var description: String { "\(message) (errno \(errno))" }

    static func from(_ error: any Error, _ context: String) -> FSError {
        switch error {
        case let e as FSError: return e
        case let e as StorageError: return FSError(e.errno, "\(context): \(e)")
        case is CancellationError: return FSError(EINTR, "\(context): interrupted")
        default: return FSError(EIO, "\(context): \(error)")
        }
    }
}

/// Monotonic time for cache expiry, injected so that tests can move it.
public protocol TimeSource: Sendable {
    /// Nanoseconds on a monotonic clock with an arbitrary origin.
    func monotonicNanoseconds() -> Int64
    /// Wall-clock time, for mtimes.
    func wallClock() -> Timestamp
}

public struct SystemTimeSource: TimeSource {
    public init() {}
    public func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
    public func wallClock() -> Timestamp { Timestamp.now() }
}

public struct ObjectFSConfiguration: Sendable {
    /// The key prefix the mount shows as its root: "" or "some/prefix/".
    public var prefix: String
    /// The owner of entries whose metadata names none.
    public var uid: UInt32
    public var gid: UInt32
    /// Show `uid`/`gid` for every entry, ignoring owners stored in metadata (`-o uid=,gid=`).
    public var fixedOwner = false
    public var umask: UInt32
    /// How long listings, attributes and negative lookups are trusted before asking the server
    /// again. Local changes are visible at once; other clients' changes after at most this long.
    public var metadataTTL: Duration
    public var readOnly: Bool
    /// Where open files being written are staged until they are uploaded. The filesystem owns
    /// this directory: it creates it and removes it (when empty) when it goes away.
    public var stagingDirectory: String
    /// Files above this size are uploaded as multipart uploads.
    public var multipartThreshold: Int64
    public var partSize: Int64
    public var uploadConcurrency: Int
    /// Write-back: `close` returns once the file is sealed (fsync'd, journaled when `journaled`)
    /// and an upload task stores it in the background; `fsync` still waits until stored.
    /// False: `close` waits until the file is stored.
    public var writeBack = false
    /// How long a closed file waits before its background upload starts: a chmod, utimes or
    /// rename right after close is folded into the one PUT.
    public var writeBackDelay: Duration = .milliseconds(300)
    /// Background uploads (and uploads of an unmount or a directory fsync) at once.
    public var writeBackConcurrency = 16
    /// A file being written sends its parts while it grows past the multipart threshold
    /// (Write/EarlyParts.swift), instead of all of them after its close.
    public var sendsPartsEarly = true
    /// The staging directory keeps a journal of the versions `close`/`fsync` acknowledged and
    /// outlives the mount: a later mount of the same remote stores what is left
    /// (`ObjectFS.recoverPending`).
    public var journaled = false
    /// Where the filesystem tells what goes wrong in the background (a failed upload).
    public var log: @Sendable (String) -> Void = { _ in }
    /// HEADs in flight for the metadata of a directory's files when listings carry none (0: one
    /// HEAD per file, when it is asked for), and how many siblings one stat starts.
    public var metadataPrefetch = 0
    /// With a maximum above `metadataPrefetch`, the width adapts to how the server's answer
    /// time holds up (Namespace/AdaptiveWidth.swift): from half of `metadataPrefetch` to this.
    public var metadataPrefetchMaximum = 0
    /// `--listing-mtime`: a listed file whose listing carries no metadata is shown with the
    /// listing's Last-Modified as its mtime and the default mode and owner, and no HEAD asks
    /// for more (until a rewrite or an extended attribute needs its metadata).
    public var listingMetadataTrusted = false
    /// Tells the kernel to forget a name in a directory (inode, name): called for changes the
    /// filesystem makes by itself (a conflict rename, a name found gone on the server), which
    /// the kernel may otherwise keep for the rest of the validity it was given.
    public var invalidateEntry: (@Sendable (InodeNumber, String) -> Void)? = nil
    public var metadataPrefetchBatch = 1000
    /// The most inodes the table keeps (`--max-inodes`; 0: no bound). Beyond it the least
    /// recently used idle ones go (Namespace/InodeLimit.swift): dropped at once when the kernel
    /// does not hold them, else the kernel is asked to forget their names (`invalidateEntry`)
    /// and they go with its forget.
    public var inodeLimit = 100_000
    /// Whether the kernel holds an inode (its lookup count is above zero); `nil`: it holds none
    /// (no kernel, as in tests).
    public var kernelHolds: (@Sendable (InodeNumber) -> Bool)? = nil
    /// Where the block cache keeps its files (one directory per remote), or `nil` for none:
    /// blocks then pass through a small memory cache only.
    public var blockCacheDirectory: String? = nil
    /// Bytes the block cache may take on disk (0: no disk cache).
    public var blockCacheSize: Int64 = 0
    /// The block cache gives blocks back when its filesystem has less free space than this.
    public var blockCacheFreeSpaceFloor: Int64 = 1 << 30
    /// Bytes per cached block and per ranged GET of a read.
    public var blockSize: Int64 = 1 << 20
    /// The daemon's memory target (`--memory-limit`): `programMemory` of it is the program's
    /// own (code, runtime, HTTP client, inode table); the rest bounds the data in flight —
    /// blocks being fetched (read-ahead, background fills) and upload parts (DESIGN.md §9).
    public var memoryLimit: Int64 = 64 << 20
    public static let programMemory: Int64 = 44 << 20
    /// What the memory budget may hand out: `memoryLimit` less `programMemory`, at least 8 MiB.
    public var dataMemoryLimit: Int64 { max(8 << 20, memoryLimit - Self.programMemory) }

    public init(
        prefix: String = "", uid: UInt32 = getuid(), gid: UInt32 = getgid(), umask: UInt32 = 0o022,
        metadataTTL: Duration = .seconds(10), readOnly: Bool = false,
        stagingDirectory: String, multipartThreshold: Int64 = 64 << 20,
        partSize: Int64 = 16 << 20, uploadConcurrency: Int = 4
    ) {
        self.prefix = prefix
        self.uid = uid
        self.gid = gid
        self.umask = umask
        self.metadataTTL = metadataTTL
        self.readOnly = readOnly
        self.stagingDirectory = stagingDirectory
        self.multipartThreshold = multipartThreshold
        self.partSize = partSize
        self.uploadConcurrency = uploadConcurrency
    }
}

/// Bytes lent to `ObjectFS.write` for the duration of the call (a FUSE request buffer).
public struct BorrowedBytes: @unchecked Sendable {
    public let buffer: UnsafeRawBufferPointer
    public init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }
}

/// At most `limit` holders at a time; the others wait in order.
actor AsyncLimiter {
    private(set) var available: Int
    private(set) var waiters: [CheckedContinuation<Void, Never>] = []

    init(limit: Int) { available = max(1, limit) }

    func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { c in
            // Looked at again where it queues: a release in between would have woken nobody.
            if available > 0 {
                available -= 1
                c.resume()
            } else {
                waiters.append(c)
            }
        }
    }

    func release() {
        if available < 0 || waiters.isEmpty {
            available += 1
        } else {
            waiters.removeFirst().resume()
        }
    }

    /// Changes the limit from `old` to `new`: a wider one lets waiters in at once; a narrower
    /// one lets nobody in until enough holders have left.
    func resize(from old: Int, to new: Int) {
        available += max(1, new) - max(1, old)
        while available > 0, !waiters.isEmpty {
            available -= 1
            waiters.removeFirst().resume()
        }
    }
}
