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
        // File state: what only a file this mount opened, wrote or locked has, kept apart
        // (`local`, made when first set) so that each of a million listed files does not carry
        // it. Read through the properties below as if they were the node's own.
        private(set) var local: LocalState?
        var openHandles = 0
        var dirty = false

        private var made: LocalState {
            if let l = local { return l }
            let l = LocalState()
            local = l
            return l
        }
        private func get<T>(_ path: Swift.KeyPath<LocalState, T>, _ none: T) -> T { local?[keyPath: path] ?? none }
        private func set<T: Equatable>(_ path: Swift.ReferenceWritableKeyPath<LocalState, T>, _ value: T, _ none: T) {
            if local != nil || value != none { made[keyPath: path] = value }
        }
        private func set<T>(_ path: Swift.ReferenceWritableKeyPath<LocalState, T?>, _ value: T?) {
            if local != nil || value != nil { made[keyPath: path] = value }
        }

        /// The version whose bytes the kernel may still hold in its page cache from an earlier
        /// open; nil once the file is written through the mount.
        var pageCacheETag: ETag? {
            get { local?.pageCacheETag }
            set { set(\LocalState.pageCacheETag, newValue) }
        }
        /// Symlink: the target, once read (dropped when the version changes).
        var target: String? {
            get { local?.target }
            set { set(\LocalState.target, newValue) }
        }
        /// User metadata (names without protocol prefix) changed locally and not stored yet;
        /// nil: the server's (`remote.metadata`).
        var userMetadata: [String: String]? {
            get { local?.userMetadata }
            set { set(\LocalState.userMetadata, newValue) }
        }
        var staging: StagingFile? {
            get { local?.staging }
            set {
                if newValue !== local?.staging { readSourceIfMade?.clear() }
                set(\LocalState.staging, newValue)
            }
        }
        /// The stored version reads come from, for reads answered outside the actor
        /// (Read/ImmediateRead.swift); cleared by every change that moves the bytes. Made at
        /// the first open.
        var readSource: ReadSource {
            if let r = readSourceIfMade { return r }
            let r = ReadSource()
            made.readSource = r
            return r
        }
        var readSourceIfMade: ReadSource? { local?.readSource }
        /// The staging file whose bytes a close or fsync acknowledged and that is not stored
        /// yet (Write/WriteBack.swift); never written again. Often the same as `staging`.
        var sealed: StagingFile? {
            get { local?.sealed }
            set { set(\LocalState.sealed, newValue) }
        }
        /// `generation` when `sealed` was taken.
        var sealedGeneration: UInt64 {
            get { get(\LocalState.sealedGeneration, 0) }
            set { set(\LocalState.sealedGeneration, newValue, 0) }
        }
        /// Why the last background upload failed, for the next close or fsync to report.
        var uploadError: FSError? {
            get { local?.uploadError }
            set { set(\LocalState.uploadError, newValue) }
        }
        /// Adopted from the journal of a mount that is gone: whatever the server holds at its
        /// key is replaced (and its old segments removed), as that mount would have done.
        var recovered: Bool {
            get { get(\LocalState.recovered, false) }
            set { set(\LocalState.recovered, newValue, false) }
        }
        /// A file not stored yet that was renamed over a stored one: the version its upload
        /// replaces (for conflict detection; a stored file's is `remote`).
        var replaces: ETag? {
            get { local?.replaces }
            set { set(\LocalState.replaces, newValue) }
        }
        /// Not stored yet, but the server may hold an older object under its name (one it was
        /// renamed over, or the version before a crash): a rename or unlink removes that too.
        var shadowsStoredObject: Bool { remote == nil && (replaces != nil || recovered) }
        var generation: UInt64 {
            get { get(\LocalState.generation, 0) }
            set { set(\LocalState.generation, newValue, 0) }
        }
        var writers: Int {
            get { get(\LocalState.writers, 0) }
            set { set(\LocalState.writers, newValue, 0) }
        }
        var busy: Bool {
            get { get(\LocalState.busy, false) }
            set { set(\LocalState.busy, newValue, false) }
        }
        /// What holds the lock, and where it is (for diagnostics).
        var lockedFor: String? {
            get { local?.lockedFor }
            set { set(\LocalState.lockedFor, newValue) }
        }
        /// The key a file had when it was removed from the namespace.
        var detachedKey: ObjectKey? {
            get { local?.detachedKey }
            set { set(\LocalState.detachedKey, newValue) }
        }
        /// Who waits for the file's lock (OpenFile.swift), by ticket.
        var waiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, Never>)] {
            get { local?.waiters ?? [] }
            set { if local != nil || !newValue.isEmpty { made.waiters = newValue } }
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
    }

    /// A node's file state, for the files that have any (Node's `local`).
    final class LocalState {
        var pageCacheETag: ETag?
        var target: String?
        var userMetadata: [String: String]?
        var staging: StagingFile?
        var readSource: ReadSource?
        var sealed: StagingFile?
        var sealedGeneration: UInt64 = 0
        var uploadError: FSError?
        var recovered = false
        var replaces: ETag?
        var generation: UInt64 = 0
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
