// ObjectFS: the filesystem over any ObjectStorage. Every method is keyed by inode (or handle)
// and throws FSError with the errno the caller must see; FuseKit's adapter only translates.
//
// How data moves:
// - The inode table holds a Node per path seen. Directory nodes keep the children they know
//   and when their listing was last complete (`listedUntil`); file nodes keep the last server
//   version seen. All of it is trusted for `metadataTTL`, then asked again (lookup: a HEAD and a
//   1-key LIST in parallel; readdir: a full delimiter listing).
// - Reads go to the handle's ObjectReader (ranged GETs, never a whole-object download at open),
//   or to the inode's staging file once the file is being written.
// - Writes go to a per-inode StagingFile; flush/fsync/release upload it (multipart above
//   `multipartThreshold`). A node that is open, dirty, or new is "pinned": listings and lookups
//   never replace it, so local work is never lost to a stale server view.
// - Rename is copy + delete (the stores have no rename); directory rename copies every key under
//   the prefix, then deletes the old ones — never the other way round.

#if canImport(Glibc)
    import Glibc
#endif
import ObjectStorage

public actor ObjectFS {
    final class Node {
        let ino: InodeNumber
        var kind: FileKind
        /// `nil` once removed from the namespace (unlinked, replaced); such a node lives on only
        /// while the kernel or an open handle still refers to it.
        var parent: InodeNumber?
        var name: String
        var mode: UInt32
        /// The version whose bytes the kernel may still hold in its page cache from an earlier
        /// open; nil once the file is written through the mount.
        var pageCacheETag: ETag?
        /// Owner stored in the object's metadata (or set by chown); nil: the mount's owner.
        var uid: UInt32?
        var gid: UInt32?
        var mtime: Timestamp
        var size: Int64 = 0
        /// File: the last server version seen; `nil` for a file not uploaded yet.
        var remote: ObjectInfo?
        var validUntil: Int64 = .min
        /// False while a file's mtime/mode come from a listing that carried no metadata (Swift,
        /// S3): a lookup then asks the object itself once.
        var metadataKnown = true
        // Directory state.
        var children: [String: InodeNumber] = [:]
        var listedUntil: Int64 = .min
        var negative: [String: Int64] = [:]
        // File state.
        var staging: StagingFile?
        var dirty = false
        var generation: UInt64 = 0
        var openHandles = 0
        var writers = 0
        var busy = false
        /// The key a file had when it was removed from the namespace.
        var detachedKey: ObjectKey?
        var waiters: [CheckedContinuation<Void, Never>] = []

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

    struct Handle {
        let ino: InodeNumber
        let flags: OpenFlags
        let reader: any ObjectReader
    }

    public nonisolated let storage: any ObjectStorage
    public nonisolated let configuration: ObjectFSConfiguration
    private let clock: any TimeSource
    private var nodes: [InodeNumber: Node] = [:]
    private var nextInode: InodeNumber = rootInode + 1
    private var handles: [UInt64: Handle] = [:]
    private var handlesKeepingPageCache: Set<UInt64> = []
    /// HEADs in flight for files whose listing carried no metadata (see `completeMetadata`).
    private var metadataFetches: [InodeNumber: Task<Void, Never>] = [:]
    private let metadataLimiter: AsyncLimiter
    private var directoryHandles: [UInt64: [DirectoryEntry]] = [:]
    private var nextHandle: UInt64 = 1
    private var stagingSerial: UInt64 = 0
    /// Staging names are unique per instance: several filesystems may share a directory.
    private let instanceID = UInt32.random(in: 0...UInt32.max)
    private let prefix: String
    private let staging: StagingDirectory

    public init(storage: any ObjectStorage, configuration: ObjectFSConfiguration, clock: any TimeSource = SystemTimeSource()) throws(FSError) {
        self.storage = storage
        self.configuration = configuration
        self.clock = clock
        self.prefix = KeyPath.normalizedPrefix(configuration.prefix)
        self.staging = try StagingDirectory(configuration.stagingDirectory)
        self.metadataLimiter = AsyncLimiter(limit: configuration.metadataPrefetch)
        let root = Node(
            ino: rootInode, kind: .directory, parent: nil, name: "",
            mode: 0o777 & ~configuration.umask, mtime: clock.wallClock())
        nodes[rootInode] = root
    }

    // MARK: - Lookup and attributes

    public func lookup(parent: InodeNumber, name: String) async throws(FSError) -> FileAttributes {
        let node = try await resolve(parent: parent, name: name)
        return attributes(node)
    }

    /// The kernel dropped its last reference to `ino`.
    public func forget(_ ino: InodeNumber) {
        if let n = nodes[ino], n.parent == nil, ino != rootInode, n.openHandles == 0, !n.dirty {
            nodes[ino] = nil
        }
    }

    public func getattr(_ ino: InodeNumber) async throws(FSError) -> FileAttributes {
        let node = try self.node(ino)
        if node.kind == .file, node.parent != nil, !node.isPinned, !node.metadataKnown, node.validUntil >= now {
            try await completeMetadata(node)
        }
        if node.kind == .file, node.parent != nil, !node.isPinned, node.validUntil < now {
            do {
                let info = try await storage.head(fileKey(node))
                if !node.isPinned { apply(info, to: node) }
            } catch StorageError.notFound {
                // Gone on the server: keep the last attributes for holders of this inode, and
                // let the next lookup of the name find that it is gone.
                if let p = node.parent.flatMap({ nodes[$0] }), !node.isPinned {
                    detach(node, from: p)
                }
            } catch {
                throw FSError.from(error, "getattr")
            }
        }
        return attributes(node)
    }

    public func setattr(_ ino: InodeNumber, _ changes: AttributeChanges) async throws(FSError) -> FileAttributes {
        let node = try self.node(ino)
        try checkWritable()
        if let size = changes.size {
            guard node.kind == .file else { throw FSError(EISDIR, "cannot truncate a directory") }
            guard size >= 0 else { throw FSError(EINVAL, "negative size") }
            let staging = try await stagingFile(for: node, loadExisting: size > 0)
            try staging.truncate(to: size)
            node.size = size
            node.mtime = clock.wallClock()
            markDirty(node)
        }
        // What really changes: a chmod, chown or utimes to the values the file already has
        // (rsync -a as root chowns every file to its owner) stores nothing.
        var changed = false
        if let mode = changes.mode, mode & 0o7777 != node.mode { node.mode = mode & 0o7777; changed = true }
        if let uid = changes.uid, uid != node.uid { node.uid = uid; changed = true }
        if let gid = changes.gid, gid != node.gid { node.gid = gid; changed = true }
        switch changes.mtime {
        case .now: node.mtime = clock.wallClock(); changed = true
        case .set(let t) where t != node.mtime: node.mtime = t; changed = true
        case .set, nil: break
        }
        // Files keep mode, mtime and owner in their metadata; directories do not (see Not yet).
        guard node.kind == .file, node.parent != nil else { return attributes(node) }
        if node.dirty {
            if node.writers == 0 { try await upload(node) }
        } else if changed, node.remote != nil {
            let key = fileKey(node)
            do {
                if node.remote?.metadata == nil {
                    // A listing carried no metadata: fetch it, so the copy keeps it.
                    let head = try await storage.head(key)
                    if head.etag == node.remote?.etag { node.remote = head }
                }
                let info = try await storage.copy(from: key, to: key, replacing: putOptions(node))
                node.remote = info
                node.validUntil = now + ttl
            } catch {
                throw FSError.from(error, "cannot store attributes of \(key)")
            }
        }
        return attributes(node)
    }

    // MARK: Extended attributes

    /// The driver's read-only object attributes (ObjectAttributeSource) are the extended
    /// attributes `user.objmount.<name>` of files. Listing them costs no request; reading one
    /// asks the server. Other names do not exist (ENODATA); none can be set.
    public static let attributeNamespace = "user.objmount."

    public func extendedAttributeNames(_ ino: InodeNumber) throws(FSError) -> [String] {
        let node = try self.node(ino)
        guard node.kind == .file, let source = storage as? any ObjectAttributeSource else { return [] }
        return source.attributeNames.map { Self.attributeNamespace + $0 }
    }

    public func extendedAttribute(_ ino: InodeNumber, name: String) async throws(FSError) -> [UInt8] {
        let node = try self.node(ino)
        let short = String(name.dropFirst(Self.attributeNamespace.count))
        guard node.kind == .file, name.hasPrefix(Self.attributeNamespace),
            let source = storage as? any ObjectAttributeSource, source.attributeNames.contains(short)
        else { throw FSError(ENODATA, "no extended attribute \(name)") }
        do {
            return Array(try await source.attribute(short, of: fileKey(node)).utf8)
        } catch StorageError.notFound {
            throw FSError(ENODATA, "\(name): the object is not stored yet")
        } catch {
            throw FSError.from(error, "getxattr \(name)")
        }
    }

    /// Setting or removing: EPERM for the driver's (read-only) attributes, ENOTSUP for others.
    public func changeExtendedAttribute(_ ino: InodeNumber, name: String) throws(FSError) {
        _ = try node(ino)
        try checkWritable()
        if extendedAttributeNamesAnswered(name) { throw FSError(EPERM, "\(name) is read-only") }
        throw FSError(ENOTSUP, "extended attributes cannot be stored")
    }

    private func extendedAttributeNamesAnswered(_ name: String) -> Bool {
        guard let source = storage as? any ObjectAttributeSource else { return false }
        return source.attributeNames.contains { Self.attributeNamespace + $0 == name }
    }

    public func statfs() async -> FilesystemStatistics {
        let blockSize: UInt64 = 4096
        let info = try? await storage.accountInfo()
        let used = UInt64(max(0, info?.bytesUsed ?? 0))
        let total = UInt64(max(0, info?.quotaBytes ?? (1 << 50)))
        let free = total > used ? total - used : 0
        let files = UInt64(max(0, info?.objectCount ?? 0))
        return FilesystemStatistics(
            blockSize: blockSize, totalBlocks: total / blockSize, freeBlocks: free / blockSize,
            totalFiles: files + 1_000_000_000, freeFiles: 1_000_000_000,
            maximumNameLength: UInt64(KeyPath.maximumNameLength))
    }

    // MARK: - Directories

    public func opendir(_ ino: InodeNumber) async throws(FSError) -> UInt64 {
        let dir = try directory(ino)
        if dir.listedUntil < now { try await refreshListing(dir) }
        var entries: [DirectoryEntry] = [
            DirectoryEntry(name: ".", attributes: attributes(dir)),
            DirectoryEntry(name: "..", attributes: attributes(dir.parent.flatMap { nodes[$0] } ?? dir)),
        ]
        for name in dir.children.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
            if let child = nodes[dir.children[name]!] {
                entries.append(
                    DirectoryEntry(
                        name: name, attributes: attributes(child),
                        attributesComplete: child.kind == .directory || child.metadataKnown || child.isPinned))
            }
        }
        let fh = newHandleNumber()
        directoryHandles[fh] = entries
        return fh
    }

    /// Entries from index `offset` on (offset 0 is "."); an entry's offset for the next call is
    /// its index + 1.
    public func readdir(_ fh: UInt64, offset: Int) throws(FSError) -> ArraySlice<DirectoryEntry> {
        guard let entries = directoryHandles[fh] else { throw FSError(EBADF, "bad directory handle") }
        return entries.dropFirst(max(0, offset))
    }

    public func releasedir(_ fh: UInt64) {
        directoryHandles[fh] = nil
    }

    /// Names of a directory (without "." and ".."), for tests and tools.
    public func list(_ ino: InodeNumber) async throws(FSError) -> [DirectoryEntry] {
        let fh = try await opendir(ino)
        defer { releasedir(fh) }
        return Array(try readdir(fh, offset: 2))
    }

    public func mkdir(parent: InodeNumber, name: String, mode: UInt32) async throws(FSError) -> FileAttributes {
        try checkWritable()
        let dir = try directory(parent)
        try checkNewName(name, in: dir)
        if try await existing(parent: parent, name: name) != nil {
            throw FSError(EEXIST, "\(name) exists")
        }
        let key = directoryPrefix(dir) + name
        do {
            switch storage.capabilities.directoryMarkerStyle {
            case .trailingSlash:
                _ = try await storage.put(
                    key + "/", payload: .bytes([]),
                    options: PutOptions(contentType: KeyPath.s3DirectoryContentType))
            case .applicationDirectory:
                _ = try await storage.put(
                    key, payload: .bytes([]), options: PutOptions(contentType: KeyPath.swiftDirectoryContentType))
            }
        } catch {
            throw FSError.from(error, "mkdir \(key)")
        }
        let node = addChild(to: dir, name: name, kind: .directory)
        node.mode = mode & 0o7777
        node.listedUntil = now + ttl
        return attributes(node)
    }

    public func rmdir(parent: InodeNumber, name: String) async throws(FSError) {
        try checkWritable()
        let dir = try directory(parent)
        let child = try await resolve(parent: parent, name: name)
        guard child.kind == .directory else { throw FSError(ENOTDIR, "\(name) is not a directory") }
        let markers = try await checkEmpty(child)
        try await keepDirectory(dir, removing: Set(markers))
        do { try await storage.delete(markers) } catch { throw FSError.from(error, "rmdir \(markers[0])") }
        detach(child, from: dir)
    }

    // MARK: - Files

    public func create(parent: InodeNumber, name: String, mode: UInt32, flags: OpenFlags) async throws(FSError) -> (
        FileAttributes, UInt64
    ) {
        try checkWritable()
        let dir = try directory(parent)
        try checkNewName(name, in: dir)
        if let existing = try await existing(parent: parent, name: name) {
            if flags.exclusive || existing.kind == .directory {
                throw FSError(EEXIST, "\(name) exists")
            }
            let fh = try await open(existing.ino, flags: flags)
            return (attributes(existing), fh)
        }
        let node = addChild(to: dir, name: name, kind: .file)
        node.mode = mode & 0o7777
        node.staging = try newStagingFile()
        markDirty(node)
        let fh = openHandle(node, flags: flags)
        return (attributes(node), fh)
    }

    public func open(_ ino: InodeNumber, flags: OpenFlags) async throws(FSError) -> UInt64 {
        let node = try self.node(ino)
        guard node.kind == .file else { throw FSError(EISDIR, "is a directory") }
        if flags.write || flags.truncate { try checkWritable() }
        // Close-to-open consistency: a handle opened after another client's change sees it.
        if !node.isPinned, node.parent != nil, node.validUntil < now {
            _ = try await getattr(ino)
        }
        if flags.truncate && flags.write {
            let staging = try await stagingFile(for: node, loadExisting: false)
            try staging.truncate(to: 0)
            node.size = 0
            node.mtime = clock.wallClock()
            markDirty(node)
        }
        let fh = openHandle(node, flags: flags)
        // The kernel may keep the pages it read through an earlier handle when this read-only
        // handle reads the same stored version (same ETag, nothing written through the mount).
        let version = node.dirty || node.staging != nil || flags.write ? nil : node.remote?.etag
        if let version, version == node.pageCacheETag { handlesKeepingPageCache.insert(fh) }
        node.pageCacheETag = version
        return fh
    }

    /// Whether the kernel may keep its cached pages of the file for handle `fh` (asked once,
    /// right after `open`).
    public func keepsPageCache(_ fh: UInt64) -> Bool {
        handlesKeepingPageCache.remove(fh) != nil
    }

    public func read(_ fh: UInt64, offset: Int64, count: Int) async throws(FSError) -> [UInt8] {
        guard let h = handles[fh] else { throw FSError(EBADF, "bad file handle") }
        let node = try self.node(h.ino)
        if let staging = node.staging {
            return try staging.read(at: offset, count: count)
        }
        guard let remote = node.remote, offset < node.size else { return [] }
        let version = ObjectVersion(key: fileKey(node), etag: remote.etag, size: node.size)
        do {
            return try await h.reader.read(version, range: ByteRange(offset: offset, length: Int64(count)))
        } catch {
            throw FSError.from(error, "read \(version.key)")
        }
    }

    public func write(_ fh: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer) throws(FSError) -> Int {
        guard let h = handles[fh], h.flags.write else { throw FSError(EBADF, "handle not open for writing") }
        let node = try self.node(h.ino)
        guard let staging = node.staging else {
            throw FSError(EIO, "internal: write before staging was ready")
        }
        try staging.write(bytes, at: offset)
        node.size = staging.size
        node.mtime = clock.wallClock()
        markDirty(node)
        return bytes.count
    }

    /// Prepares a handle for writes (loads the current bytes if needed). Called before `write`.
    public func prepareWrite(_ fh: UInt64) async throws(FSError) {
        guard let h = handles[fh], h.flags.write else { throw FSError(EBADF, "handle not open for writing") }
        let node = try self.node(h.ino)
        if node.staging == nil { _ = try await stagingFile(for: node, loadExisting: true) }
    }

    /// Writes caller-owned bytes (valid for the duration of the call) at `offset`.
    public func write(_ fh: UInt64, offset: Int64, borrowed: BorrowedBytes) async throws(FSError) -> Int {
        try await prepareWrite(fh)
        return try write(fh, offset: offset, bytes: borrowed.buffer)
    }

    /// Writes `bytes` at `offset` (loading the object first if this is the first write).
    public func write(_ fh: UInt64, offset: Int64, data: [UInt8]) async throws(FSError) -> Int {
        try await prepareWrite(fh)
        do {
            return try data.withUnsafeBytes { buffer in try write(fh, offset: offset, bytes: buffer) }
        } catch {
            throw FSError.from(error, "write")
        }
    }

    public func flush(_ fh: UInt64) async throws(FSError) {
        guard let h = handles[fh] else { throw FSError(EBADF, "bad file handle") }
        if h.flags.write, let node = nodes[h.ino], node.dirty { try await upload(node) }
    }

    /// Stores the inode's pending data, whichever descriptor wrote it.
    public func fsync(_ fh: UInt64) async throws(FSError) {
        guard let h = handles[fh] else { throw FSError(EBADF, "bad file handle") }
        if let node = nodes[h.ino], node.dirty { try await upload(node) }
    }

    public func release(_ fh: UInt64) async {
        guard let h = handles.removeValue(forKey: fh), let node = nodes[h.ino] else { return }
        if h.flags.write, node.dirty {
            // The last chance to store what close() already tried; a failure keeps the staging
            // file and the node pinned so that unmount retries it.
            try? await upload(node)
        }
        node.openHandles -= 1
        if h.flags.write { node.writers -= 1 }
        if node.openHandles == 0 && !node.dirty {
            node.staging = nil
            if node.parent == nil && node.ino != rootInode { /* freed on forget */ }
        }
    }

    public func unlink(parent: InodeNumber, name: String) async throws(FSError) {
        try checkWritable()
        let dir = try directory(parent)
        let child = try await resolve(parent: parent, name: name)
        guard child.kind == .file else { throw FSError(EISDIR, "\(name) is a directory") }
        let key = fileKey(child)
        try await keepDirectory(dir, removing: [key])
        if child.remote != nil {
            do { try await storage.delete([key]) } catch { throw FSError.from(error, "unlink \(key)") }
        }
        detach(child, from: dir)
    }

    public func rename(parent: InodeNumber, name: String, newParent: InodeNumber, newName: String, noReplace: Bool = false)
        async throws(FSError)
    {
        try checkWritable()
        let fromDir = try directory(parent)
        let toDir = try directory(newParent)
        try checkNewName(newName, in: toDir)
        let source = try await resolve(parent: parent, name: name)
        if source.kind == .directory {
            // A directory cannot move into itself (checked first, as the kernel does).
            var p: InodeNumber? = toDir.ino
            while let cur = p {
                if cur == source.ino { throw FSError(EINVAL, "cannot move a directory into itself") }
                p = nodes[cur]?.parent
            }
        }
        let target = try await existing(parent: newParent, name: newName)
        if let t = target {
            if t === source { return }
            if noReplace { throw FSError(EEXIST, "\(newName) exists") }
            switch (source.kind, t.kind) {
            case (.file, .directory): throw FSError(EISDIR, "\(newName) is a directory")
            case (.directory, .file): throw FSError(ENOTDIR, "\(newName) is not a directory")
            default: break
            }
        }
        // Copy first; delete the originals only once every copy succeeded.
        var originals: [ObjectKey] = []
        var copies: [ObjectKey: ObjectInfo] = [:]
        if source.kind == .directory {
            var targetMarkers: [ObjectKey] = []
            if let t = target { targetMarkers = try await checkEmpty(t) }
            let oldPrefix = directoryPrefix(source)
            (originals, copies) = try await copyDirectoryObjects(from: oldPrefix, to: directoryPrefix(toDir) + newName)
            // The replaced empty directory's markers go with the originals, unless a copy just
            // wrote the same key.
            originals += targetMarkers.filter { copies[$0] == nil }
            try await keepDirectory(fromDir, removing: [oldPrefix, String(oldPrefix.dropLast())])
        } else if source.remote != nil {
            let from = fileKey(source)
            let to = directoryPrefix(toDir) + newName
            do {
                source.remote = try await storage.copy(from: from, to: to, replacing: nil)
            } catch {
                throw FSError.from(error, "rename \(from)")
            }
            originals = [from]
            try await keepDirectory(fromDir, removing: [from])
        }
        if !originals.isEmpty {
            do {
                try await storage.removeAfterMove(originals)
            } catch {
                throw FSError.from(error, "rename: delete \(originals[0])")
            }
        }
        if let t = target { detach(t, from: toDir) }
        fromDir.children[name] = nil
        source.parent = toDir.ino
        source.name = newName
        toDir.children[newName] = source.ino
        toDir.negative[newName] = nil
        fromDir.negative[name] = now + ttl
        // The files under a moved directory are new objects with new ETags: open handles keep
        // reading them without a stale error.
        if source.kind == .directory { adopt(copies, under: source) }
    }

    private func adopt(_ copies: [ObjectKey: ObjectInfo], under dir: Node) {
        for ino in dir.children.values {
            guard let n = nodes[ino] else { continue }
            if n.kind == .directory {
                adopt(copies, under: n)
            } else if n.remote != nil, let info = copies[fileKey(n)] {
                n.remote = info
            }
        }
    }

    /// Uploads every dirty file (unmount, `objmount unmount`). Returns the failures.
    public func flushAll() async -> [FSError] {
        var failures: [FSError] = []
        for node in nodes.values where node.dirty && node.parent != nil {
            do { try await upload(node) } catch { failures.append(error) }
        }
        return failures
    }

    /// How many files have data not yet stored on the server.
    public var pendingUploads: Int { nodes.values.filter { $0.dirty && $0.parent != nil }.count }

    // MARK: - Namespace internals

    private var now: Int64 { clock.monotonicNanoseconds() }
    private var ttl: Int64 {
        let c = configuration.metadataTTL.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    private func node(_ ino: InodeNumber) throws(FSError) -> Node {
        guard let n = nodes[ino] else { throw FSError(ENOENT, "stale inode \(ino)") }
        return n
    }

    private func directory(_ ino: InodeNumber) throws(FSError) -> Node {
        let n = try node(ino)
        guard n.kind == .directory else { throw FSError(ENOTDIR, "not a directory") }
        return n
    }

    private func checkWritable() throws(FSError) {
        if configuration.readOnly { throw FSError(EROFS, "read-only mount") }
    }

    private func checkNewName(_ name: String, in dir: Node) throws(FSError) {
        if name.utf8.count > KeyPath.maximumNameLength { throw FSError(ENAMETOOLONG, "name too long") }
        guard KeyPath.isRepresentable(name) else { throw FSError(EINVAL, "invalid name") }
        if (directoryPrefix(dir) + name).utf8.count + 1 > KeyPath.maximumKeyLength {
            throw FSError(ENAMETOOLONG, "object key would exceed \(KeyPath.maximumKeyLength) bytes")
        }
    }

    /// The key prefix of a directory's children: the mount prefix plus its path plus "/".
    private func directoryPrefix(_ dir: Node) -> String {
        var parts: [String] = []
        var cur: Node? = dir
        while let n = cur, n.ino != rootInode {
            parts.append(n.name)
            cur = n.parent.flatMap { nodes[$0] }
        }
        return parts.isEmpty ? prefix : prefix + parts.reversed().joined(separator: "/") + "/"
    }

    private func fileKey(_ file: Node) -> ObjectKey {
        guard let p = file.parent.flatMap({ nodes[$0] }) else { return file.detachedKey ?? prefix + file.name }
        return directoryPrefix(p) + file.name
    }

    /// The node at `name`, or nil if there is none; other failures (EIO...) are thrown, never
    /// taken for "does not exist".
    private func existing(parent: InodeNumber, name: String) async throws(FSError) -> Node? {
        do {
            return try await resolve(parent: parent, name: name)
        } catch {
            if error.errno == ENOENT { return nil }
            throw error
        }
    }

    private func resolve(parent: InodeNumber, name: String) async throws(FSError) -> Node {
        let dir = try directory(parent)
        if name.utf8.count > KeyPath.maximumNameLength { throw FSError(ENAMETOOLONG, "name too long") }
        guard KeyPath.isRepresentable(name) else { throw FSError(ENOENT, "no such entry") }
        let t = now
        if let ino = dir.children[name], let n = nodes[ino], n.isPinned || n.validUntil >= t || n.kind == .directory && dir.listedUntil >= t {
            if n.kind == .file && !n.metadataKnown && !n.isPinned { try await completeMetadata(n) }
            return n
        }
        if dir.children[name] == nil && dir.listedUntil >= t {
            throw FSError(ENOENT, "no such entry")
        }
        if let until = dir.negative[name], until >= t { throw FSError(ENOENT, "no such entry") }
        let key = directoryPrefix(dir) + name
        let found: (kind: FileKind, info: ObjectInfo?)?
        do {
            found = try await probe(key)
        } catch {
            throw FSError.from(error, "lookup \(key)")
        }
        // The actor may have changed the directory while we waited.
        if let ino = dir.children[name], let n = nodes[ino], n.isPinned { return n }
        guard let found else {
            if let ino = dir.children[name], let n = nodes[ino] { detach(n, from: dir) }
            dir.negative[name] = now + ttl
            throw FSError(ENOENT, "no such entry")
        }
        dir.negative[name] = nil
        return upsert(dir, name: name, kind: found.kind, info: found.info)
    }

    /// Reads a file's metadata (mtime, mode) with a HEAD when its listing did not carry it.
    /// The first such file of a directory also starts HEADs of its next siblings (in name
    /// order, `metadataPrefetch` at a time), so that `ls -l` waits about one round trip per
    /// batch rather than one per file.
    private func completeMetadata(_ n: Node) async throws(FSError) {
        if configuration.metadataPrefetch > 0 {
            if metadataFetches[n.ino] == nil { prefetchMetadata(from: n) }
            if let fetch = metadataFetches[n.ino] {
                await fetch.value
                if n.metadataKnown || n.isPinned { return }
            }
        }
        let key = fileKey(n)
        do {
            let info = try await storage.head(key)
            if !n.isPinned { apply(info, to: n) }
        } catch StorageError.notFound {
            if let p = n.parent.flatMap({ nodes[$0] }), !n.isPinned { detach(n, from: p) }
            throw FSError(ENOENT, "no such entry")
        } catch {
            throw FSError.from(error, "lookup \(key)")
        }
    }

    /// Starts HEADs of `n` and of up to `metadataPrefetchBatch` siblings after it whose
    /// metadata is unknown; each applies its answer when it comes.
    private func prefetchMetadata(from n: Node) {
        guard let dir = n.parent.flatMap({ nodes[$0] }) else { return }
        let names = dir.children.keys.filter { $0 >= n.name }.sorted().prefix(configuration.metadataPrefetchBatch)
        let limiter = metadataLimiter
        let storage = self.storage
        for name in names {
            guard let ino = dir.children[name], let c = nodes[ino], c.kind == .file, !c.metadataKnown, !c.isPinned,
                metadataFetches[ino] == nil
            else { continue }
            let key = fileKey(c)
            let etag = c.remote?.etag
            metadataFetches[ino] = Task {
                await limiter.acquire()
                let info = try? await storage.head(key)
                await limiter.release()
                self.finishMetadataFetch(ino, info, listedETag: etag)
            }
        }
    }

    private func finishMetadataFetch(_ ino: InodeNumber, _ info: ObjectInfo?, listedETag: ETag?) {
        metadataFetches[ino] = nil
        // Only the version the listing showed: anything else is left to the caller's own HEAD.
        guard let info, let n = nodes[ino], !n.isPinned, !n.metadataKnown, info.etag == listedETag else { return }
        apply(info, to: n)
    }

    /// What the server has at `key`: a directory (listing under `key/` not empty, or a marker),
    /// a file, or nothing. The HEAD and the 1-key LIST run in parallel.
    private func probe(_ key: ObjectKey) async throws -> (kind: FileKind, info: ObjectInfo?)? {
        let storage = self.storage
        async let head: ObjectInfo? = {
            do { return try await storage.head(key) } catch StorageError.notFound { return nil }
        }()
        async let listing = storage.list(prefix: key + "/", delimiter: "/", continuation: nil, maxKeys: 1)
        let (h, l) = try await (head, listing)
        if !l.objects.isEmpty || !l.commonPrefixes.isEmpty {
            return (.directory, h.flatMap { KeyPath.isDirectoryMarker($0) ? $0 : nil })
        }
        if let h {
            return KeyPath.isDirectoryMarker(h) ? (.directory, h) : (.file, h)
        }
        return nil
    }

    private func refreshListing(_ dir: Node) async throws(FSError) {
        let dirPrefix = directoryPrefix(dir)
        let page: ListPage
        do {
            page = try await storage.listAll(prefix: dirPrefix, delimiter: KeyPath.delimiter)
        } catch {
            throw FSError.from(error, "list \(dirPrefix)")
        }
        guard directoryPrefix(dir) == dirPrefix else { return }  // renamed meanwhile
        var seen: Set<String> = []
        for entry in KeyPath.children(of: dirPrefix, in: page) {
            seen.insert(entry.name)
            upsert(dir, name: entry.name, kind: entry.kind, info: entry.info)
        }
        for (name, ino) in dir.children where !seen.contains(name) {
            if let n = nodes[ino], !isPinnedTree(n) { detach(n, from: dir) }
        }
        dir.negative = [:]
        dir.listedUntil = now + ttl
    }

    private func isPinnedTree(_ n: Node) -> Bool {
        if n.isPinned { return true }
        guard n.kind == .directory else { return false }
        return n.children.values.contains { nodes[$0].map(isPinnedTree) ?? false }
    }

    @discardableResult
    private func upsert(_ dir: Node, name: String, kind: FileKind, info: ObjectInfo?) -> Node {
        if let ino = dir.children[name], let n = nodes[ino] {
            if n.kind == kind || isPinnedTree(n) {
                if n.kind == .file, let info, !n.isPinned { apply(info, to: n) }
                if n.kind == .directory { n.validUntil = now + ttl }
                return n
            }
            detach(n, from: dir)
        }
        let n = addChild(to: dir, name: name, kind: kind)
        if let info {
            if kind == .file { apply(info, to: n) } else { n.mtime = info.lastModified }
        }
        n.validUntil = now + ttl
        return n
    }

    private func addChild(to dir: Node, name: String, kind: FileKind) -> Node {
        let ino = nextInode
        nextInode += 1
        let mode: UInt32 = (kind == .directory ? 0o777 : 0o666) & ~configuration.umask
        let n = Node(ino: ino, kind: kind, parent: dir.ino, name: name, mode: mode, mtime: clock.wallClock())
        nodes[ino] = n
        dir.children[name] = ino
        dir.negative[name] = nil
        return n
    }

    /// Removes a node from its directory. The kernel may still hold the inode; it is freed on
    /// forget (or kept while handles are open).
    private func detach(_ n: Node, from dir: Node) {
        if n.kind == .file && n.parent != nil { n.detachedKey = fileKey(n) }
        if dir.children[n.name] == n.ino { dir.children[n.name] = nil }
        n.parent = nil
        for ino in n.children.values {
            if let c = nodes[ino] { detach(c, from: n) }
        }
    }

    private func apply(_ info: ObjectInfo, to n: Node) {
        let sameVersion = n.remote?.etag != nil && n.remote?.etag == info.etag
        if info.metadata != nil {
            n.metadataKnown = true
        } else if !sameVersion {
            n.metadataKnown = false
        }
        if let meta = info.metadata {
            n.mtime = meta["mtime"].flatMap(Timestamp.init(metadataValue:)) ?? info.lastModified
            if let m = meta["mode"].flatMap({ UInt32($0) }) { n.mode = m & 0o7777 }
            n.uid = meta["uid"].flatMap { UInt32($0) }
            n.gid = meta["gid"].flatMap { UInt32($0) }
        } else if !sameVersion {
            n.mtime = info.lastModified
        }
        n.remote = info
        n.size = info.size
        n.validUntil = now + ttl
    }

    private func attributes(_ n: Node) -> FileAttributes {
        FileAttributes(
            ino: n.ino, kind: n.kind, size: n.kind == .file ? n.size : 0, mode: n.mode,
            uid: configuration.fixedOwner ? configuration.uid : n.uid ?? configuration.uid,
            gid: configuration.fixedOwner ? configuration.gid : n.gid ?? configuration.gid, mtime: n.mtime)
    }

    /// The stored version's content type and other metadata, with our mtime and mode.
    private func putOptions(_ n: Node) -> PutOptions {
        var metadata = n.remote?.metadata ?? [:]
        metadata.merge(PosixMetadata.encode(mtime: n.mtime, mode: n.mode, uid: n.uid, gid: n.gid)) { $1 }
        return PutOptions(contentType: n.remote?.contentType, metadata: metadata)
    }

    /// Checks that a directory is empty on the server and locally; returns its marker keys
    /// (to delete).
    private func checkEmpty(_ dir: Node) async throws(FSError) -> [ObjectKey] {
        if dir.children.values.contains(where: { nodes[$0].map(isPinnedTree) ?? false }) {
            throw FSError(ENOTEMPTY, "directory not empty")
        }
        let dirPrefix = directoryPrefix(dir)
        let markerKey = String(dirPrefix.dropLast())
        do {
            let page = try await storage.list(prefix: dirPrefix, delimiter: "/", continuation: nil, maxKeys: 2)
            if !page.commonPrefixes.isEmpty || page.objects.contains(where: { $0.key != dirPrefix }) {
                throw FSError(ENOTEMPTY, "directory not empty")
            }
            var markers = [dirPrefix]
            if let h = try? await storage.head(markerKey), KeyPath.isDirectoryMarker(h) {
                markers.append(markerKey)
            }
            return markers
        } catch {
            throw FSError.from(error, "rmdir \(markerKey)")
        }
    }

    /// Copies every object under `from` (a directory prefix ending in "/") to the directory key
    /// `to`, with a Swift-style marker `from` minus "/" if there is one. Returns the originals
    /// (for the caller to delete) and the copies. If a copy fails, the copies made so far are
    /// removed and the source is left whole.
    private func copyDirectoryObjects(from: String, to: String) async throws(FSError) -> (
        [ObjectKey], [ObjectKey: ObjectInfo]
    ) {
        let oldMarker = String(from.dropLast())
        var moves: [(ObjectKey, ObjectKey)] = []
        do {
            let all = try await storage.listAll(prefix: from, delimiter: nil)
            for o in all.objects {
                moves.append((o.key, to + "/" + String(o.key.utf8.dropFirst(from.utf8.count))!))
            }
            if let h = try? await storage.head(oldMarker), KeyPath.isDirectoryMarker(h) {
                moves.append((oldMarker, to))
            }
            if moves.isEmpty {
                // An implicit directory known only locally (emptied by other clients): give the
                // new name a marker so that it exists.
                try await putMarker(directoryKey: to)
                return ([], [:])
            }
        } catch {
            throw FSError.from(error, "rename \(oldMarker)")
        }
        let storage = self.storage
        var copies: [ObjectKey: ObjectInfo] = [:]
        do {
            try await withThrowingTaskGroup(of: ObjectInfo.self) { group in
                var inFlight = 0
                for (src, dst) in moves {
                    if inFlight >= 8, let info = try await group.next() {
                        copies[info.key] = info
                        inFlight -= 1
                    }
                    group.addTask {
                        var info = try await storage.copy(from: src, to: dst, replacing: nil)
                        info.key = dst
                        return info
                    }
                    inFlight += 1
                }
                while let info = try await group.next() { copies[info.key] = info }
            }
        } catch {
            try? await storage.delete(Array(copies.keys))
            throw FSError.from(error, "rename \(oldMarker)")
        }
        return (moves.map(\.0), copies)
    }

    private func putMarker(directoryKey key: String) async throws {
        switch storage.capabilities.directoryMarkerStyle {
        case .trailingSlash:
            _ = try await storage.put(
                key + "/", payload: .bytes([]), options: PutOptions(contentType: KeyPath.s3DirectoryContentType))
        case .applicationDirectory:
            _ = try await storage.put(
                key, payload: .bytes([]), options: PutOptions(contentType: KeyPath.swiftDirectoryContentType))
        }
    }

    /// Before the last entry of a directory without a marker is removed, writes a marker so
    /// that the directory stays, as it would on a disk. `removing` names the listing entries
    /// (keys or common prefixes) about to go. A failure is reported before anything is deleted.
    private func keepDirectory(_ dir: Node, removing: Set<String>) async throws(FSError) {
        guard dir.ino != rootInode, dir.parent != nil else { return }
        // A fresh, complete listing with other children answers without asking the server.
        if dir.listedUntil >= now && dir.children.count > 1 { return }
        let dirPrefix = directoryPrefix(dir)
        do {
            let page = try await storage.list(prefix: dirPrefix, delimiter: "/", continuation: nil, maxKeys: 3)
            let remaining = page.objects.map(\.key) + page.commonPrefixes
            guard remaining.allSatisfy({ removing.contains($0) }) else { return }
            try await putMarker(directoryKey: String(dirPrefix.dropLast()))
        } catch {
            throw FSError.from(error, "keep directory \(dirPrefix)")
        }
    }

    // MARK: - Handles, staging and uploads

    private func newHandleNumber() -> UInt64 {
        let fh = nextHandle
        nextHandle += 1
        return fh
    }

    private func openHandle(_ node: Node, flags: OpenFlags) -> UInt64 {
        let fh = newHandleNumber()
        let reader: any ObjectReader =
            configuration.readAheadChunks > 0
            ? PrefetchingReader(storage: storage, chunkSize: configuration.readAheadChunkSize, chunks: configuration.readAheadChunks)
            : RangedReader(storage: storage)
        handles[fh] = Handle(ino: node.ino, flags: flags, reader: reader)
        node.openHandles += 1
        if flags.write { node.writers += 1 }
        return fh
    }

    private func markDirty(_ node: Node) {
        node.pageCacheETag = nil
        node.dirty = true
        node.generation &+= 1
    }

    private func newStagingFile() throws(FSError) -> StagingFile {
        stagingSerial += 1
        return try StagingFile(directory: staging, name: "staged-\(getpid())-\(instanceID)-\(stagingSerial)")
    }

    private func lock(_ n: Node) async {
        while n.busy { await withCheckedContinuation { n.waiters.append($0) } }
        n.busy = true
    }

    private func unlock(_ n: Node) {
        n.busy = false
        if !n.waiters.isEmpty { n.waiters.removeFirst().resume() }
    }

    /// The inode's staging file, created on first use; with `loadExisting` it starts as a copy
    /// of the stored object (fetched in ranged pieces).
    private func stagingFile(for node: Node, loadExisting: Bool) async throws(FSError) -> StagingFile {
        if let s = node.staging { return s }
        await lock(node)
        defer { unlock(node) }
        if let s = node.staging { return s }
        let staging = try newStagingFile()
        if loadExisting, let remote = node.remote, remote.size > 0 {
            let key = fileKey(node)
            let chunk: Int64 = 8 << 20
            var offset: Int64 = 0
            do {
                while offset < remote.size {
                    let bytes = try await storage.get(
                        key, range: ByteRange(offset: offset, length: min(chunk, remote.size - offset)),
                        ifMatch: remote.etag)
                    guard !bytes.isEmpty else { throw StorageError.malformedReply("short read of \(key)") }
                    try bytes.withUnsafeBytes { buffer in try staging.write(buffer, at: offset) }
                    offset += Int64(bytes.count)
                }
            } catch {
                throw FSError.from(error, "cannot load \(key) for writing")
            }
        }
        node.staging = staging
        return staging
    }

    private func upload(_ node: Node) async throws(FSError) {
        await lock(node)
        defer { unlock(node) }
        // A rename during the upload moves the target: store again under the new name, so that
        // a successful close always means the data is stored where the file now is.
        var renamedAway = false
        for _ in 0..<8 {
            renamedAway = false
            guard node.dirty, node.parent != nil, let staging = node.staging else { break }
            let generation = node.generation
            let key = fileKey(node)
            var options = putOptions(node)
            options.isNew = node.remote == nil
            let info: ObjectInfo
            do {
                if staging.size > configuration.multipartThreshold {
                    info = try await multipartUpload(key, staging: staging, options: options)
                } else {
                    info = try await storage.put(key, payload: staging.payload(), options: options)
                }
            } catch {
                throw FSError.from(error, "upload \(key)")
            }
            if node.parent == nil {
                // Unlinked while it was being uploaded.
                try? await storage.delete([key])
                node.dirty = false
                break
            }
            if fileKey(node) != key {
                try? await storage.delete([key])
                renamedAway = true
                continue
            }
            node.remote = info
            node.validUntil = now + ttl
            // Writes that arrived during the upload keep the file dirty for the next flush.
            if node.generation == generation { node.dirty = false }
            renamedAway = false
            break
        }
        if renamedAway {
            throw FSError(EIO, "upload of \(fileKey(node)) kept being overtaken by renames")
        }
        // Nobody has the file open: the local copy is not needed any more and would go stale.
        if !node.dirty && node.openHandles == 0 { node.staging = nil }
    }

    private func multipartUpload(_ key: ObjectKey, staging: StagingFile, options: PutOptions) async throws
        -> ObjectInfo
    {
        let size = staging.size
        let caps = storage.capabilities
        var partSize = max(configuration.partSize, caps.minimumPartSize)
        let maxParts = Int64(caps.maximumPartCount)
        if (size + partSize - 1) / partSize > maxParts { partSize = (size + maxParts - 1) / maxParts }
        let upload = try await storage.createMultipartUpload(key, options: options)
        let storage = self.storage
        do {
            let count = Int((size + partSize - 1) / partSize)
            let parts = try await withThrowingTaskGroup(of: UploadedPart.self) { group in
                var done: [UploadedPart] = []
                var next = 0
                func add() {
                    let number = next + 1
                    let offset = Int64(next) * partSize
                    let payload = staging.payload(offset: offset, length: min(partSize, size - offset))
                    group.addTask { try await storage.uploadPart(upload, number: number, payload: payload) }
                    next += 1
                }
                while next < min(count, configuration.uploadConcurrency) { add() }
                while let part = try await group.next() {
                    done.append(part)
                    if next < count { add() }
                }
                return done.sorted { $0.number < $1.number }
            }
            return try await storage.completeMultipartUpload(upload, parts: parts)
        } catch {
            try? await storage.abortMultipartUpload(upload)
            throw error
        }
    }
}
