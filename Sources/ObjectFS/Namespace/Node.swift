// Node: one inode of the namespace — a directory with the children it knows, or a file with
// the last server version seen and its local (staged, dirty) state.

import ObjectStorage
import Synchronization

extension ObjectFS {
    final class Node {
        let ino: InodeNumber
        var kind: FileKind
        /// `nil` once removed from the namespace (unlinked, replaced); such a node lives on only
        /// while the kernel or an open handle still refers to it.
        var parent: InodeNumber? { didSet { if parent != oldValue { local?.readSource?.clear() } } }
        var name: String { didSet { if name != oldValue { local?.readSource?.clear() } } }
        var mode: UInt32
        /// Owner stored in the object's metadata (or set by chown); nil: the mount's owner.
        var uid: UInt32?
        var gid: UInt32?
        var mtime: Timestamp
        var size: Int64 = 0 { didSet { if size != oldValue { local?.readSource?.clear() } } }
        /// File: the last server version seen, without its key (`fileKey` says where it is: a
        /// million listed objects would hold every key twice); `nil` for a file not uploaded yet.
        var remote: ObjectInfo? {
            get {
                storedRemote.map {
                    ObjectInfo(
                        key: "", size: $0.size, etag: $0.etag, lastModified: $0.lastModified,
                        contentType: $0.contentType, metadata: $0.metadata)
                }
            }
            set {
                if newValue?.etag != storedRemote?.etag || newValue?.size != storedRemote?.size {
                    local?.readSource?.clear()
                }
                storedRemote = newValue.map {
                    StoredVersion(
                        size: $0.size, etag: $0.etag, lastModified: $0.lastModified,
                        contentType: $0.contentType.map(ContentTypes.shared), metadata: $0.metadata)
                }
            }
        }
        private var storedRemote: StoredVersion?
        private struct StoredVersion {
            var size: Int64
            var etag: ETag?
            var lastModified: Timestamp
            var contentType: String?
            var metadata: [String: String]?
        }
        var validUntil: Int64 = .min
        /// When this mount last wrote, or moved, this node's object or marker (monotonic ns): a
        /// listing or HEAD that was asked before, or that lags behind, does not remove it
        /// (Namespace.swift, `heldAgainstServer`).
        var changedAt: Int64 = .min
        /// False while a file's mtime/mode come from a listing that carried no metadata (Swift,
        /// S3): a lookup then asks the object itself once.
        var metadataKnown = true
        /// Used since the inode limit last passed it by (InodeLimit.swift: a second chance).
        var referenced = true
        // Directory state (in `directoryState`, made for directories only).
        var children: Names<InodeNumber> {
            get { directoryState?.children ?? Names() }
            _modify { yield &madeDirectoryState.children }
        }
        var listedUntil: Int64 {
            get { directoryState?.listedUntil ?? .min }
            set { if newValue != .min || directoryState != nil { madeDirectoryState.listedUntil = newValue } }
        }
        /// When a child was last dropped from the table (a stamp like a listing's, InodeLimit.swift):
        /// a listing asked before does not know all the names.
        var childDroppedAt: Int64 {
            get { directoryState?.childDroppedAt ?? .min }
            set { madeDirectoryState.childDroppedAt = newValue }
        }
        /// When the last listing of its directory that showed it was asked (Listing.swift).
        var listedAt: Int64 = .min
        var negative: Names<Int64> {
            get { directoryState?.negative ?? Names() }
            _modify { yield &madeDirectoryState.negative }
        }
        /// Names this mount removed, with when: a listing asked before, or lagging behind, does
        /// not bring them back.
        var removed: Names<Int64> {
            get { directoryState?.removed ?? Names() }
            _modify { yield &madeDirectoryState.removed }
        }
        /// Names of objects (files, symlinks) the inode limit dropped before the kernel held
        /// them (InodeLimit.swift): a lookup of one asks its HEAD only, not whether the name is
        /// also a directory.
        var droppedObjects: Names<Void> {
            get { directoryState?.droppedObjects ?? Names() }
            _modify { yield &madeDirectoryState.droppedObjects }
        }
        private var directoryState: DirectoryState?
        private var madeDirectoryState: DirectoryState {
            if let d = directoryState { return d }
            let d = DirectoryState()
            directoryState = d
            return d
        }
        /// What only a file this mount opened, wrote, locked or read a link of has: made at the
        /// first such use, so that a listed node stays small (a million of them are common).
        private var local: LocalState?
        private var made: LocalState {
            if let l = local { return l }
            let l = LocalState()
            local = l
            return l
        }

        init(ino: InodeNumber, kind: FileKind, parent: InodeNumber?, name: String, mode: UInt32, mtime: Timestamp) {
            self.ino = ino
            self.kind = kind
            self.parent = parent
            self.name = name
            self.mode = mode
            self.mtime = mtime
        }

        var isPinned: Bool { openHandles > 0 || dirty || (kind == .file && remote == nil) }

        // File state (in `local`; the defaults when there is none).

        /// The version whose bytes the kernel may still hold in its page cache from an earlier
        /// open; nil once the file is written through the mount.
        var pageCacheETag: ETag? {
            get { local?.pageCacheETag }
            set { if newValue != nil || local != nil { made.pageCacheETag = newValue } }
        }
        /// Symlink: the target, once read (dropped when the version changes).
        var target: String? {
            get { local?.target }
            set { if newValue != nil || local != nil { made.target = newValue } }
        }
        /// User metadata (names without protocol prefix) changed locally and not stored yet;
        /// nil: the server's (`remote.metadata`).
        var userMetadata: [String: String]? {
            get { local?.userMetadata }
            set { if newValue != nil || local != nil { made.userMetadata = newValue } }
        }
        var staging: StagingFile? {
            get { local?.staging }
            set {
                if newValue !== local?.staging { local?.readSource?.clear() }
                if newValue != nil || local != nil { made.staging = newValue }
            }
        }
        /// The stored version reads come from, for reads answered outside the actor
        /// (Read/ImmediateRead.swift); cleared by every change above that moves the bytes.
        /// Made at the first open.
        var readSource: ReadSource {
            if let r = local?.readSource { return r }
            let r = ReadSource()
            made.readSource = r
            return r
        }
        var dirty: Bool {
            get { local?.dirty ?? false }
            set { if newValue || local != nil { made.dirty = newValue } }
        }
        /// The staging file whose bytes a close or fsync acknowledged and that is not stored
        /// yet (Write/WriteBack.swift); never written again. Often the same as `staging`.
        var sealed: StagingFile? {
            get { local?.sealed }
            set { if newValue != nil || local != nil { made.sealed = newValue } }
        }
        /// `generation` when `sealed` was taken.
        var sealedGeneration: UInt64 {
            get { local?.sealedGeneration ?? 0 }
            set { if newValue != 0 || local != nil { made.sealedGeneration = newValue } }
        }
        /// Why the last background upload failed, for the next close or fsync to report.
        var uploadError: FSError? {
            get { local?.uploadError }
            set { if newValue != nil || local != nil { made.uploadError = newValue } }
        }
        /// Adopted from the journal of a mount that is gone: whatever the server holds at its
        /// key is replaced (and its old segments removed), as that mount would have done.
        var recovered: Bool {
            get { local?.recovered ?? false }
            set { if newValue || local != nil { made.recovered = newValue } }
        }
        /// A file not stored yet that was renamed over a stored one: the version its upload
        /// replaces (for conflict detection; a stored file's is `remote`).
        var replaces: ETag? {
            get { local?.replaces }
            set { if newValue != nil || local != nil { made.replaces = newValue } }
        }
        /// Not stored yet, but the server may hold an older object under its name (one it was
        /// renamed over, or the version before a crash): a rename or unlink removes that too.
        var shadowsStoredObject: Bool { remote == nil && (replaces != nil || recovered) }
        var generation: UInt64 {
            get { local?.generation ?? 0 }
            set { if newValue != 0 || local != nil { made.generation = newValue } }
        }
        var openHandles: Int {
            get { local?.openHandles ?? 0 }
            set { if newValue != 0 || local != nil { made.openHandles = newValue } }
        }
        var writers: Int {
            get { local?.writers ?? 0 }
            set { if newValue != 0 || local != nil { made.writers = newValue } }
        }
        var busy: Bool {
            get { local?.busy ?? false }
            set { if newValue || local != nil { made.busy = newValue } }
        }
        /// What holds the lock, and where it is (for diagnostics).
        var lockedFor: String? {
            get { local?.lockedFor }
            set { if newValue != nil || local != nil { made.lockedFor = newValue } }
        }
        /// The key a file had when it was removed from the namespace.
        var detachedKey: ObjectKey? {
            get { local?.detachedKey }
            set { if newValue != nil || local != nil { made.detachedKey = newValue } }
        }
        /// Who waits for the file's lock (OpenFile.swift), by ticket.
        var waiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, Never>)] {
            get { local?.waiters ?? [] }
            set { if !newValue.isEmpty || local != nil { made.waiters = newValue } }
        }
    }

    /// A directory's names; see `Node.children`.
    final class DirectoryState {
        var children = Names<InodeNumber>()
        var listedUntil: Int64 = .min
        var childDroppedAt: Int64 = .min
        var negative = Names<Int64>()
        var removed = Names<Int64>()
        var droppedObjects = Names<Void>()
    }

    /// A node's state for local work; see `Node.local`.
    final class LocalState {
        var pageCacheETag: ETag?
        var target: String?
        var userMetadata: [String: String]?
        var staging: StagingFile?
        var readSource: ReadSource?
        var dirty = false
        var sealed: StagingFile?
        var sealedGeneration: UInt64 = 0
        var uploadError: FSError?
        var recovered = false
        var replaces: ETag?
        var generation: UInt64 = 0
        var openHandles = 0
        var writers = 0
        var busy = false
        var lockedFor: String?
        var detachedKey: ObjectKey?
        var waiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
    }
}

/// A directory's entries by name, where names are compared as bytes (ByteString): `caf\u{e9}`
/// (NFC) and `cafe\u{301}` (NFD) are two objects on every server, and two entries here.
struct Names<Value>: Sequence {
    private var table: [ByteString: Value] = [:]

    subscript(name: String) -> Value? {
        get { table[ByteString(name)] }
        set { table[ByteString(name)] = newValue }
    }

    var names: [String] { table.keys.map(\.string) }

    /// The first `limit` names from `name` on (itself included) in byte order: one pass and a
    /// sort of those names only, not of the whole directory's as Strings.
    func names(from name: String, limit: Int) -> [String] {
        let start = ByteString(name)
        return table.keys.filter { !($0 < start) }.sorted().prefix(limit).map(\.string)
    }
    var isEmpty: Bool { table.isEmpty }

    mutating func removeAll(where shouldRemove: (Value) -> Bool) {
        table = table.filter { !shouldRemove($0.value) }
    }
    var values: Dictionary<ByteString, Value>.Values { table.values }
    var count: Int { table.count }

    func makeIterator() -> some IteratorProtocol<(name: String, value: Value)> {
        table.lazy.map { (name: $0.key.string, value: $0.value) }.makeIterator()
    }
}

/// One copy of each content type the nodes hold: a HEAD's `Content-Type` is a String of its
/// own per object (most are the same few, `application/octet-stream`), kept by every node.
enum ContentTypes {
    private static let seen = Mutex<[ByteString: String]>([:])
    /// At most this many kinds are shared; others stay as they came.
    static let limit = 256

    static func shared(_ type: String) -> String {
        seen.withLock { seen in
            if let known = seen[ByteString(type)] { return known }
            if seen.count < limit { seen[ByteString(type)] = type }
            return type
        }
    }
}
