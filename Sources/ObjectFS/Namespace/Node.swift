// Node: one inode of the namespace — a directory with the children it knows, or a file with
// the last server version seen and its local (staged, dirty) state.

import ObjectStorage

extension ObjectFS {
    final class Node {
        let ino: InodeNumber
        var kind: FileKind
        /// `nil` once removed from the namespace (unlinked, replaced); such a node lives on only
        /// while the kernel or an open handle still refers to it.
        var parent: InodeNumber? { didSet { if parent != oldValue { readSourceIfMade?.clear() } } }
        var name: String { didSet { if name != oldValue { readSourceIfMade?.clear() } } }
        var mode: UInt32
        /// The version whose bytes the kernel may still hold in its page cache from an earlier
        /// open; nil once the file is written through the mount.
        var pageCacheETag: ETag?
        /// Owner stored in the object's metadata (or set by chown); nil: the mount's owner.
        var uid: UInt32?
        var gid: UInt32?
        var mtime: Timestamp
        var size: Int64 = 0 { didSet { if size != oldValue { readSourceIfMade?.clear() } } }
        /// File: the last server version seen; `nil` for a file not uploaded yet.
        var remote: ObjectInfo? {
            didSet { if remote?.etag != oldValue?.etag || remote?.size != oldValue?.size { readSourceIfMade?.clear() } }
        }
        var validUntil: Int64 = .min
        /// When this mount last wrote, or moved, this node's object or marker (monotonic ns): a
        /// listing or HEAD that was asked before, or that lags behind, does not remove it
        /// (Namespace.swift, `heldAgainstServer`).
        var changedAt: Int64 = .min
        /// False while a file's mtime/mode come from a listing that carried no metadata (Swift,
        /// S3): a lookup then asks the object itself once.
        var metadataKnown = true
        // Directory state.
        var children = Names<InodeNumber>()
        var listedUntil: Int64 = .min
        var negative = Names<Int64>()
        /// Names this mount removed, with when: a listing asked before, or lagging behind, does
        /// not bring them back.
        var removed = Names<Int64>()
        // File state.
        /// Symlink: the target, once read (dropped when the version changes).
        var target: String?
        /// User metadata (names without protocol prefix) changed locally and not stored yet;
        /// nil: the server's (`remote.metadata`).
        var userMetadata: [String: String]?
        var staging: StagingFile? { didSet { if staging !== oldValue { readSourceIfMade?.clear() } } }
        /// The stored version reads come from, for reads answered outside the actor
        /// (Read/ImmediateRead.swift); cleared by every change above that moves the bytes.
        var readSource: ReadSource {
            if let r = readSourceIfMade { return r }
            let r = ReadSource()
            readSourceIfMade = r
            return r
        }
        /// Made at the first open: a listed file never opened carries none (a million listed
        /// objects would hold a million).
        private(set) var readSourceIfMade: ReadSource?
        var dirty = false
        /// The staging file whose bytes a close or fsync acknowledged and that is not stored
        /// yet (Write/WriteBack.swift); never written again. Often the same as `staging`.
        var sealed: StagingFile?
        /// `generation` when `sealed` was taken.
        var sealedGeneration: UInt64 = 0
        /// Why the last background upload failed, for the next close or fsync to report.
        var uploadError: FSError?
        /// Adopted from the journal of a mount that is gone: whatever the server holds at its
        /// key is replaced (and its old segments removed), as that mount would have done.
        var recovered = false
        /// A file not stored yet that was renamed over a stored one: the version its upload
        /// replaces (for conflict detection; a stored file's is `remote`).
        var replaces: ETag?
        /// Not stored yet, but the server may hold an older object under its name (one it was
        /// renamed over, or the version before a crash): a rename or unlink removes that too.
        var shadowsStoredObject: Bool { remote == nil && (replaces != nil || recovered) }
        var generation: UInt64 = 0
        var openHandles = 0
        var writers = 0
        var busy = false
        /// What holds the lock, and where it is (for diagnostics).
        var lockedFor: String?
        /// The key a file had when it was removed from the namespace.
        var detachedKey: ObjectKey?
        /// Who waits for the file's lock (OpenFile.swift), by ticket.
        var waiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, Never>)] = []

        init(ino: InodeNumber, kind: FileKind, parent: InodeNumber?, name: String, mode: UInt32, mtime: Timestamp) {
            self.ino = ino
            self.kind = kind
            self.parent = parent
            self.name = name
            self.mode = mode
            self.mtime = mtime
        }

        var isPinned: Bool { openHandles > 0 || dirty || (kind == .file && remote == nil) }
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
