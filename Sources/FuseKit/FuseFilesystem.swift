// FuseKit: safe Swift over libfuse3's low-level API (through the CFuse shim).
//
// A `FuseFilesystem` answers requests with async methods that return values or throw; the
// session turns each result into exactly one `fuse_reply_*` (see FuseSession.respond). FuseKit
// knows nothing about objects: inode numbers, names, attributes and bytes only.

#if canImport(Glibc)
    import Glibc
#endif

public typealias Inode = UInt64

/// A request failure with the errno the kernel passes on to the caller.
public struct FuseError: Error, Hashable, Sendable {
    public var errno: Int32
    public init(_ errno: Int32) { self.errno = errno }
}

public enum FuseFileType: Sendable, Hashable {
    case regular
    case directory
    /// A symbolic link: `readlink` gives its target, `size` is the target's length in bytes.
    case symlink

    /// The `S_IFMT` bits of `st_mode`.
    public var modeBits: UInt32 {
        switch self {
        case .regular: UInt32(S_IFREG)
        case .directory: UInt32(S_IFDIR)
        case .symlink: UInt32(S_IFLNK)
        }
    }
}

/// What the kernel caches for an inode (a `struct stat`).
public struct FuseAttributes: Sendable, Hashable {
    public var ino: Inode
    public var type: FuseFileType
    public var permissions: UInt32
    public var size: Int64
    public var uid: UInt32
    public var gid: UInt32
    public var nlink: UInt32
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: Int32
    /// How long the kernel may keep this entry and these attributes (seconds); `nil`: the
    /// mount's `entryTimeout` / `attributeTimeout`. A filesystem that trusts what it knows
    /// for a while says how much of that while is left, so that the kernel never keeps an
    /// answer longer than the filesystem itself would.
    public var cacheSeconds: Double?
    public init(
        ino: Inode, type: FuseFileType, permissions: UInt32, size: Int64, uid: UInt32, gid: UInt32,
        nlink: UInt32, mtimeSeconds: Int64, mtimeNanoseconds: Int32
    ) {
        self.ino = ino
        self.type = type
        self.permissions = permissions
        self.size = size
        self.uid = uid
        self.gid = gid
        self.nlink = nlink
        self.mtimeSeconds = mtimeSeconds
        self.mtimeNanoseconds = mtimeNanoseconds
    }

    public var mode: UInt32 { type.modeBits | (permissions & 0o7777) }
}

public struct FuseDirectoryEntry: Sendable, Hashable {
    public var name: String
    public var attributes: FuseAttributes
    /// The offset the kernel passes back to continue after this entry.
    public var nextOffset: Int64
    /// False: the kernel must not cache this entry's attributes (readdirplus timeouts 0).
    public var cacheable: Bool
    /// False: the entry's type is not known yet. It goes to the kernel as DT_UNKNOWN and, in
    /// readdirplus, without an inode, so that the kernel looks the name up before using it.
    public var typeKnown: Bool
    public init(
        name: String, attributes: FuseAttributes, nextOffset: Int64, cacheable: Bool = true, typeKnown: Bool = true
    ) {
        self.name = name
        self.attributes = attributes
        self.nextOffset = nextOffset
        self.cacheable = cacheable
        self.typeKnown = typeKnown
    }
}

/// The fields of a `setattr` request that are set.
public struct FuseSetAttributes: Sendable, Hashable {
    public enum Time: Sendable, Hashable {
        case now
        case set(seconds: Int64, nanoseconds: Int32)
    }
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: Int64?
    public var atime: Time?
    public var mtime: Time?
    public init() {}
}

public struct FuseStatistics: Sendable, Hashable {
    public var blockSize: UInt64
    public var blocks: UInt64
    public var blocksFree: UInt64
    public var files: UInt64
    public var filesFree: UInt64
    public var nameMax: UInt64
    public init(
        blockSize: UInt64, blocks: UInt64, blocksFree: UInt64, files: UInt64, filesFree: UInt64, nameMax: UInt64
    ) {
        self.blockSize = blockSize
        self.blocks = blocks
        self.blocksFree = blocksFree
        self.files = files
        self.filesFree = filesFree
        self.nameMax = nameMax
    }
}

/// Bytes that belong to the session for the duration of one `write` call (a pooled copy of
/// the kernel's request buffer). Do not keep the pointer after the call returns.
public struct FuseWriteBuffer: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
}

public struct FuseOpenResult: Sendable, Hashable {
    public var handle: UInt64
    /// Keep the kernel's page cache from a previous open (the file did not change).
    public var keepCache: Bool
    public init(handle: UInt64, keepCache: Bool = false) {
        self.handle = handle
        self.keepCache = keepCache
    }
}

/// The operations a FUSE filesystem implements. Errors are `FuseError`s; any other error
/// becomes EIO. Every method is called from Swift concurrency, never on a libfuse thread.
public protocol FuseFilesystem: Sendable {
    func lookup(parent: Inode, name: String) async throws -> FuseAttributes
    /// The kernel dropped its last reference to each of `inos` (FuseKit counts the lookups).
    func forget(_ inos: [Inode]) async
    func getattr(_ ino: Inode) async throws -> FuseAttributes
    func setattr(_ ino: Inode, _ changes: FuseSetAttributes, handle: UInt64?) async throws -> FuseAttributes
    func opendir(_ ino: Inode) async throws -> UInt64
    /// Entries starting at `offset` (0 is the first); the session stops when its buffer is full.
    func readdir(_ ino: Inode, handle: UInt64, offset: Int64) async throws -> [FuseDirectoryEntry]
    func releasedir(_ ino: Inode, handle: UInt64) async
    func mkdir(parent: Inode, name: String, mode: UInt32) async throws -> FuseAttributes
    func rmdir(parent: Inode, name: String) async throws
    func unlink(parent: Inode, name: String) async throws
    func rename(parent: Inode, name: String, newParent: Inode, newName: String, noReplace: Bool) async throws
    func create(parent: Inode, name: String, mode: UInt32, flags: Int32) async throws -> (
        FuseAttributes, FuseOpenResult
    )
    func open(_ ino: Inode, flags: Int32) async throws -> FuseOpenResult
    func read(_ ino: Inode, handle: UInt64, offset: Int64, size: Int) async throws -> [UInt8]
    /// Answers a read on libfuse's thread when that needs no waiting (the bytes are in memory):
    /// fills `buffer` (the size the kernel asked for) and returns the byte count; `nil` sends
    /// the read to `read` instead. Must never block.
    func readImmediately(_ ino: Inode, handle: UInt64, offset: Int64, into buffer: UnsafeMutableRawBufferPointer)
        -> Int?
    func write(_ ino: Inode, handle: UInt64, offset: Int64, buffer: FuseWriteBuffer) async throws -> Int
    func flush(_ ino: Inode, handle: UInt64) async throws
    func fsync(_ ino: Inode, handle: UInt64, dataOnly: Bool) async throws
    /// `fsync` of an open directory.
    func fsyncdir(_ ino: Inode, handle: UInt64, dataOnly: Bool) async throws
    func release(_ ino: Inode, handle: UInt64) async
    func statfs(_ ino: Inode) async throws -> FuseStatistics
    /// Extended attributes: names of `ino`'s (no I/O expected), the value of one (ENODATA when
    /// absent), and setting or removing one (the error to give).
    func listxattr(_ ino: Inode) async throws -> [String]
    func getxattr(_ ino: Inode, name: String) async throws -> [UInt8]
    /// The name prefixes (`user.`) that `getxattr` may find: any other name is answered
    /// ENODATA on libfuse's thread, without a task. The kernel asks `security.capability`
    /// before every write() to a file, one request in seven of a `cp` of small files.
    var extendedAttributeNamespaces: [String] { get }
    func setxattr(_ ino: Inode, name: String, value: [UInt8], flags: Int32) async throws
    func removexattr(_ ino: Inode, name: String) async throws
    /// Creates a symbolic link `name` in `parent` pointing at `target` (stored as given, never
    /// resolved). A successful reply counts as a lookup of the new inode.
    func symlink(parent: Inode, name: String, target: String) async throws -> FuseAttributes
    /// The target of the symbolic link `ino`.
    func readlink(_ ino: Inode) async throws -> String
    /// A hard link `newName` in `newParent` to `ino`. A successful reply counts as a lookup.
    func link(_ ino: Inode, newParent: Inode, newName: String) async throws -> FuseAttributes
    /// `mknod(2)`: `mode` carries the file type bits (S_IFREG, S_IFIFO, S_IFCHR, S_IFBLK,
    /// S_IFSOCK). A successful reply counts as a lookup. (open(O_CREAT) arrives as `create`.)
    func mknod(parent: Inode, name: String, mode: UInt32, rdev: UInt64) async throws -> FuseAttributes
    /// `fallocate(2)` on an open file; `mode` is its FALLOC_FL_* flags.
    func fallocate(_ ino: Inode, handle: UInt64, mode: Int32, offset: Int64, length: Int64) async throws
    /// The session is ending (after the kernel's last request): store what is pending.
    func shutdown() async
}

extension FuseFilesystem {
    public func readImmediately(
        _ ino: Inode, handle: UInt64, offset: Int64, into buffer: UnsafeMutableRawBufferPointer
    ) -> Int? { nil }
    public func listxattr(_ ino: Inode) async throws -> [String] { [] }
    public func getxattr(_ ino: Inode, name: String) async throws -> [UInt8] { throw FuseError(ENODATA) }
    public var extendedAttributeNamespaces: [String] { [] }
    public func setxattr(_ ino: Inode, name: String, value: [UInt8], flags: Int32) async throws {
        throw FuseError(ENOTSUP)
    }
    public func removexattr(_ ino: Inode, name: String) async throws { throw FuseError(ENOTSUP) }

    // Calls a filesystem may leave out. Without file locking operations the kernel keeps
    // flock/fcntl locks local to the mount (FuseKit does not register getlk/setlk/flock).

    /// Not implemented (yet): the caller sees ENOSYS.
    public func symlink(parent: Inode, name: String, target: String) async throws -> FuseAttributes {
        throw FuseError(ENOSYS)
    }
    public func readlink(_ ino: Inode) async throws -> String { throw FuseError(ENOSYS) }
    /// No hard links: EPERM, as on filesystems that do not support them (link(2)).
    public func link(_ ino: Inode, newParent: Inode, newName: String) async throws -> FuseAttributes {
        throw FuseError(EPERM)
    }
    /// A regular file is made with `create` and released at once, as libfuse's high-level API
    /// does for a filesystem without mknod. FIFOs, sockets and device nodes: EPERM (mknod(2)
    /// "the filesystem does not support the type of node requested").
    public func mknod(parent: Inode, name: String, mode: UInt32, rdev: UInt64) async throws -> FuseAttributes {
        guard mode & UInt32(S_IFMT) == UInt32(S_IFREG) else { throw FuseError(EPERM) }
        let (attributes, opened) = try await create(
            parent: parent, name: name, mode: mode, flags: O_CREAT | O_EXCL | O_WRONLY)
        // Stored by flush, as close(2) would; a failure is the caller's.
        do {
            try await flush(attributes.ino, handle: opened.handle)
        } catch {
            await release(attributes.ino, handle: opened.handle)
            throw error
        }
        await release(attributes.ino, handle: opened.handle)
        return attributes
    }
    /// No preallocation: EOPNOTSUPP, which fallocate(2) gives for an unsupported mode.
    public func fsyncdir(_ ino: Inode, handle: UInt64, dataOnly: Bool) async throws {}
    public func fallocate(_ ino: Inode, handle: UInt64, mode: Int32, offset: Int64, length: Int64) async throws {
        throw FuseError(EOPNOTSUPP)
    }
}
