// ObjectFS: the filesystem over any ObjectStorage. Every method is keyed by inode (or handle)
// and throws FSError with the errno the caller must see; FuseKit's adapter only translates.
//
// How data moves:
// - The inode table holds a Node per path seen. Directory nodes keep the children they know
//   and when their listing was last complete (`listedUntil`); file nodes keep the last server
//   version seen. All of it is trusted for `metadataTTL`, then asked again (lookup: a HEAD and a
//   1-key LIST in parallel; readdir: a full delimiter listing).
// - Reads of stored versions go through the block cache (Read/): the handle's ReadWindow says
//   what to fetch, the shared Prefetcher fetches each missing block once (never a whole-object
//   download at open). A file being written is read from its staging file.
// - Writes go to a per-inode StagingFile. close seals it (fsync'd, journaled) and, with
//   write-back, returns while an upload task stores it; fsync and unmount wait until stored
//   (Write/WriteBack.swift; multipart above `multipartThreshold`). A node that is open, dirty, or new is "pinned": listings and lookups
//   never replace it, so local work is never lost to a stale server view.
// - Rename is copy + delete (the stores have no rename); directory rename copies every key under
//   the prefix, then deletes the old ones — never the other way round.

import ObjectStorage
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public actor ObjectFS {
    public nonisolated let storage: any ObjectStorage
    public nonisolated let configuration: ObjectFSConfiguration
    let clock: any TimeSource
    var nodes: [InodeNumber: Node] = [:]
    var nextInode: InodeNumber = rootInode + 1
    /// The nodes in the order the inode limit looks at them, those whose names the kernel was
    /// asked to forget for it, and the table size below which it does not try again after a
    /// pass that freed too little (Namespace/InodeLimit.swift).
    var inodeQueue = InodeQueue()
    var evicting: Set<InodeNumber> = []
    var inodeLimitRetryAt = 0
    var inodeTrimScheduled = false
    /// How many names `Node.droppedObjects` hold in all (InodeLimit.swift).
    var droppedObjectNames = 0
    var handles: [UInt64: Handle] = [:]
    /// The reading state of every open handle, for reads answered outside the actor.
    nonisolated let readHandles = Mutex<[UInt64: HandleReads]>([:])
    var handlesKeepingPageCache: Set<UInt64> = []
    /// HEADs in flight for files whose listing carried no metadata (see `completeMetadata`).
    var metadataFetches: [InodeNumber: Task<Void, Never>] = [:]
    let metadataLimiter: AsyncLimiter
    /// How many of those HEADs go at once, when it adapts to the server (else `nil`).
    var metadataWidth: AdaptiveWidth?
    var directoryHandles: [UInt64: DirectoryHandle] = [:]
    /// When the latest listing was asked (Namespace/Listing.swift), unique per listing.
    var lastListingAsked: Int64 = .min
    var nextHandle: UInt64 = 1
    var stagingSerial: UInt64 = 0
    var lockTickets: UInt64 = 0
    /// The node each waiting `lock` call waits for, by ticket.
    var lockWaits: [UInt64: Node] = [:]
    /// When this filesystem started (wall clock): uploads older than this are not its own.
    let startedAt: Timestamp
    /// Directory renames in progress, and the uploads waiting for them to end.
    var directoryRenames = 0
    var renameWaiters: [CheckedContinuation<Void, Never>] = []
    /// The write-back journal (Write/Journal.swift), when the staging directory outlives the mount.
    let journal: Journal?
    /// Background uploads, one per file (Write/WriteBack.swift).
    var uploads: [InodeNumber: Task<Void, Never>] = [:]
    /// Files being stored now (holding a permit of `uploadLimiter`), and for what.
    var storing: [InodeNumber: [String]] = [:]
    /// Bytes per second a part upload goes at, once one was measured (Write/EarlyParts.swift).
    var partRate: Double?
    /// Parts being sent now, by every upload of this mount.
    var partsInFlight = 0
    /// Journal records appended, and how many of them a finished journal sync covers.
    var journalRecords: UInt64 = 0
    var syncedJournalRecords: UInt64 = 0
    /// The latest journal record naming each key (a `put` under it, or the `done` of a file
    /// recorded under it), while it is not synced: an upload waits for its key's records only.
    var unsyncedRecordOf: [ObjectKey: UInt64] = [:]
    /// Journal syncs done (for tests).
    var journalSyncs = 0
    var journalSyncScheduled = false
    /// Whether the server refuses a PUT with `If-None-Match: *` over an existing object (found
    /// by the first upload of a new small file, Write/Upload.swift); `nil`: not known yet.
    var ifAbsentHonoured: Bool?
    let uploadLimiter: AsyncLimiter
    /// Staging names are unique per instance: several filesystems may share a directory.
    let instanceID = UInt32.random(in: 0...UInt32.max)
    let prefix: String
    let staging: StagingDirectory
    let prefetcher: Prefetcher
    let budget: MemoryBudget
    /// Why the disk block cache could not be opened (reads then go through memory only).
    public nonisolated let blockCacheProblem: String?

    public init(
        storage: any ObjectStorage, configuration: ObjectFSConfiguration, clock: any TimeSource = SystemTimeSource()
    ) throws(FSError) {
        self.storage = storage
        self.configuration = configuration
        self.clock = clock
        startedAt = clock.wallClock()
        self.prefix = KeyPath.normalizedPrefix(configuration.prefix)
        self.staging = try StagingDirectory(configuration.stagingDirectory)
        journal = configuration.journaled ? try Journal(directory: staging.path, instance: instanceID) : nil
        uploadLimiter = AsyncLimiter(limit: configuration.writeBackConcurrency)
        self.metadataLimiter = AsyncLimiter(limit: configuration.metadataPrefetch)
        if configuration.metadataPrefetch > 0, configuration.metadataPrefetchMaximum > configuration.metadataPrefetch {
            metadataWidth = AdaptiveWidth(
                start: configuration.metadataPrefetch,
                range: max(1, configuration.metadataPrefetch / 2)...configuration.metadataPrefetchMaximum)
        }
        budget = MemoryBudget(limit: configuration.dataMemoryLimit)
        var cache: any BlockCache = MemoryBlockCache(
            blockSize: configuration.blockSize,
            capacity: max(configuration.blockSize, configuration.dataMemoryLimit / 2))
        var problem: String? = nil
        if let directory = configuration.blockCacheDirectory, configuration.blockCacheSize > 0 {
            do {
                cache = try DiskBlockCache(
                    directory: directory, blockSize: configuration.blockSize, capacity: configuration.blockCacheSize,
                    freeSpaceFloor: configuration.blockCacheFreeSpaceFloor)
            } catch {
                problem = error.message
            }
        }
        blockCacheProblem = problem
        // A randomly read file is filled in the background when it takes at most a quarter of
        // the disk cache.
        prefetcher = Prefetcher(
            storage: storage, cache: cache, budget: budget,
            fillLimit: cache is DiskBlockCache ? cache.capacity / 4 : 0)
        let root = Node(
            ino: rootInode, kind: .directory, parent: nil, name: "",
            mode: 0o777 & ~configuration.umask, mtime: clock.wallClock())
        nodes[rootInode] = root
    }

    /// The block cache directory under `cacheDirectory` for the remote that `identity` names
    /// (server, account, bucket; no secret).
    public static func blockCacheDirectory(under cacheDirectory: String, for identity: String) -> String {
        DiskBlockCache.directory(under: cacheDirectory, for: identity)
    }

    /// The staging and journal directory under `cacheDirectory` for one remote and prefix
    /// (`identity`: server, account, bucket, prefix; no secret).
    public static func journalDirectory(under cacheDirectory: String, for identity: String) -> String {
        "\(cacheDirectory)/pending-\(Checksum.name(Array(identity.utf8)).prefix(16))"
    }

    // MARK: - Lookup and attributes

    public func lookup(parent: InodeNumber, name: String) async throws(FSError) -> FileAttributes {
        var node = try await resolve(parent: parent, name: name)
        // Dropped by the inode limit while a HEAD was awaited (it was not the kernel's yet):
        // the kernel must not get an inode the table no longer has.
        for _ in 0..<3 where nodes[node.ino] !== node { node = try await resolve(parent: parent, name: name) }
        node.referenced = true
        return attributes(node)
    }

    /// The kernel dropped its last reference to `ino`: the node goes (with what is under it,
    /// which the kernel cannot hold without it) unless this mount still needs it — open, not
    /// stored, locked, or changed by this mount within the TTL. Its directory then no longer
    /// knows all its names: the next lookup there asks the server, the next readdir lists
    /// again. Inode numbers are never reused (a name seen again gets a new one), so generation
    /// 0 never confuses a new inode with an old one.
    public func forget(_ ino: InodeNumber) {
        guard ino != rootInode, let n = nodes[ino] else { return }
        evicting.remove(ino)
        guard let dir = n.parent.flatMap({ nodes[$0] }) else {
            // Removed from the namespace: kept only for its handles and its upload.
            if n.openHandles == 0, !n.dirty { nodes[ino] = nil }
            return
        }
        // An open listing may still hand the inode to the kernel.
        guard isForgettable(n, at: now), !directoryHandles.values.contains(where: { $0.dir == dir.ino }) else { return }
        dropChild(n, from: dir)
    }

    /// `forget` of each, in the order the kernel forgot them.
    public func forget(_ inos: [InodeNumber]) {
        for ino in inos { forget(ino) }
    }

    /// Inodes in the table (the root included), for tests and diagnostics.
    public var inodeCount: Int { nodes.count }

    public func getattr(_ ino: InodeNumber) async throws(FSError) -> FileAttributes {
        let node = try self.node(ino)
        if node.kind == .directory, !node.metadataKnown { try await completeDirectoryMetadata(node) }
        if node.kind.isObject, node.parent != nil, !node.isPinned, !node.metadataKnown, node.validUntil >= now {
            try await completeMetadata(node)
        }
        if node.kind.isObject, node.parent != nil, !node.isPinned, node.validUntil < now {
            do {
                let info = try await storage.head(fileKey(node))
                if !node.isPinned { apply(info, to: node) }
            } catch StorageError.notFound {
                // Gone on the server: keep the last attributes for holders of this inode, and
                // let the next lookup of the name find that it is gone.
                if let p = node.parent.flatMap({ nodes[$0] }), !node.isPinned {
                    detachGone(node, from: p)
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
            guard node.kind == .file else {
                throw node.kind == .directory
                    ? FSError(EISDIR, "cannot truncate a directory") : FSError(EINVAL, "not a file")
            }
            guard size >= 0 else { throw FSError(EINVAL, "negative size") }
            // A truncate keeps what stays of the stored bytes on the server (a shorter prefix).
            let staging = try await stagingFile(for: node, loadExisting: size > 0, writingAt: .max)
            try staging.truncate(to: size)
            node.size = size
            node.mtime = clock.wallClock()
            markDirty(node)
        }
        // What really changes: a chmod, chown or utimes to the values the file already has
        // (rsync -a as root chowns every file to its owner) stores nothing. A symlink's mode is
        // always 0777 on Linux: a mode change of one is ignored.
        var changed = false
        if let mode = changes.mode, node.kind != .symlink, mode & 0o7777 != node.mode {
            node.mode = mode & 0o7777
            changed = true
        }
        if let uid = changes.uid, uid != node.uid { node.uid = uid; changed = true }
        if let gid = changes.gid, gid != node.gid { node.gid = gid; changed = true }
        switch changes.mtime {
        case .now: node.mtime = clock.wallClock(); changed = true
        case .set(let t) where t != node.mtime: node.mtime = t; changed = true
        case .set, nil: break
        }
        // Files keep mode, mtime and owner in their metadata, directories on their marker.
        if node.kind == .directory {
            if changed { try await storeDirectoryMetadata(node) }
            return attributes(node)
        }
        guard node.parent != nil else { return attributes(node) }
        if node.dirty {
            // Folded into the pending upload (and its journal record): rsync's close, utimes,
            // chmod become one PUT.
            if node.writers == 0 {
                try await commit(node)
            } else if node.sealed != nil {
                try await recordSealed(node, wait: false)
            }
        } else if changed, node.remote != nil {
            try await storeMetadata(node)
        }
        return attributes(node)
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

    public func mkdir(parent: InodeNumber, name: String, mode: UInt32) async throws(FSError) -> FileAttributes {
        try checkWritable()
        let dir = try directory(parent)
        try checkNewName(name, in: dir)
        if try await existing(parent: parent, name: name) != nil {
            throw FSError(EEXIST, "\(name) exists")
        }
        let key = directoryPrefix(dir) + name
        let node = addChild(to: dir, name: name, kind: .directory)
        node.mode = mode & 0o7777
        // Changed by this mount from now on: nothing drops or replaces it while it is stored.
        node.changedAt = now
        do {
            try await putMarker(directoryKey: key, metadata: directoryMetadata(node))
        } catch {
            detach(node, from: dir)
            throw FSError.from(error, "mkdir \(key)")
        }
        node.listedUntil = now + ttl
        node.changedAt = now
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
        noteRemoved(name, from: dir)
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
        try checkObjectAllowed(in: dir)
        let node = addChild(to: dir, name: name, kind: .file)
        node.mode = mode & 0o7777
        node.staging = try newStagingFile()
        markDirty(node)
        let fh = openHandle(node, flags: flags)
        return (attributes(node), fh)
    }

    public func open(_ ino: InodeNumber, flags: OpenFlags) async throws(FSError) -> UInt64 {
        let node = try self.node(ino)
        guard node.kind == .file else {
            throw node.kind == .directory ? FSError(EISDIR, "is a directory") : FSError(ELOOP, "is a symlink")
        }
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
            let prefix = staging.storedPrefix
            guard offset < prefix, let remote = node.remote else {
                return try await staging.readOffPool(at: offset, count: count)
            }
            // A file being extended: its first bytes are still the stored version's only.
            let version = ObjectVersion(key: fileKey(node), etag: remote.etag, size: remote.size)
            var bytes = try await readStored(
                version, CachedObject(version), reads: h.reads, offset: offset,
                count: Int(min(Int64(count), prefix - offset)))
            if bytes.count == count || offset + Int64(bytes.count) < prefix { return bytes }
            bytes += try await staging.readOffPool(at: prefix, count: count - bytes.count)
            return bytes
        }
        guard let remote = node.remote, offset < node.size else { return [] }
        let version = ObjectVersion(key: fileKey(node), etag: remote.etag, size: node.size)
        return try await readStored(
            version, node.readSource.publish(version), reads: h.reads, offset: offset, count: count)
    }

    private func readStored(
        _ version: ObjectVersion, _ object: CachedObject, reads: HandleReads, offset: Int64, count: Int
    )
        async throws(FSError) -> [UInt8]
    {
        let actions = reads.actions(
            offset: offset, length: count, size: version.size, maximumWindow: prefetcher.windowLimit)
        do {
            return try await prefetcher.read(version, object, offset: offset, count: count, actions: actions)
        } catch {
            throw FSError.from(error, "read \(version.key)")
        }
    }

    public func write(_ fh: UInt64, offset: Int64, bytes: UnsafeRawBufferPointer) throws(FSError) -> Int {
        guard let h = handles[fh], h.flags.write else { throw FSError(EBADF, "handle not open for writing") }
        let node = try self.node(h.ino)
        guard let staging = node.staging, staging !== node.sealed, offset >= staging.storedPrefix else {
            throw FSError(EIO, "internal: write before staging was ready")
        }
        try staging.write(bytes, at: offset)
        node.size = staging.size
        node.mtime = clock.wallClock()
        markDirty(node)
        if staging.size > configuration.multipartThreshold { sendFilledParts(node, staging) }
        return bytes.count
    }

    /// Prepares a handle for a write at `offset` (loads the current bytes if needed: none when
    /// the write extends the file). Called before `write`.
    public func prepareWrite(_ fh: UInt64, at offset: Int64 = 0) async throws(FSError) {
        guard let h = handles[fh], h.flags.write else { throw FSError(EBADF, "handle not open for writing") }
        let node = try self.node(h.ino)
        // Each wait may let another descriptor's close seal the staging file: check again.
        for _ in 0..<8 {
            guard let staging = node.staging, staging !== node.sealed else {
                _ = try await stagingFile(for: node, loadExisting: true, writingAt: offset)
                continue
            }
            if offset < staging.storedPrefix {
                try await fillStoredPrefix(staging, of: node)
                continue
            }
            return
        }
        throw FSError(EIO, "write to \(fileKey(node)) kept being overtaken by closes")
    }

    /// Writes caller-owned bytes (valid for the duration of the call) at `offset`.
    public func write(_ fh: UInt64, offset: Int64, borrowed: BorrowedBytes) async throws(FSError) -> Int {
        try await prepareWrite(fh, at: offset)
        return try write(fh, offset: offset, bytes: borrowed.buffer)
    }

    /// Writes `bytes` at `offset` (loading the object first if this is the first write).
    public func write(_ fh: UInt64, offset: Int64, data: [UInt8]) async throws(FSError) -> Int {
        try await prepareWrite(fh, at: offset)
        do {
            return try data.withUnsafeBytes { buffer in try write(fh, offset: offset, bytes: buffer) }
        } catch {
            throw FSError.from(error, "write")
        }
    }

    public func flush(_ fh: UInt64) async throws(FSError) {
        guard let h = handles[fh] else { throw FSError(EBADF, "bad file handle") }
        // A file created through a read-only descriptor (O_RDONLY|O_CREAT, as `flock FILE`
        // does) is stored at its close like any other new file.
        if let node = nodes[h.ino], node.dirty, h.flags.write || node.remote == nil { try await commit(node) }
    }

    /// Stores the inode's pending data, whichever descriptor wrote it, and returns once it is
    /// on the server.
    public func fsync(_ fh: UInt64) async throws(FSError) {
        guard let h = handles[fh] else { throw FSError(EBADF, "bad file handle") }
        if let node = nodes[h.ino], node.dirty {
            try await seal(node)
            try await upload(node)
        }
    }

    public func release(_ fh: UInt64) async {
        // What its read-ahead fetched and nobody read yet is not waited for any more.
        if let reads = readHandles.withLock({ $0.removeValue(forKey: fh) }), let source = reads.source.value {
            prefetcher.leave(source.object, reads.window.withLock { $0.ahead })
        }
        guard let h = handles.removeValue(forKey: fh), let node = nodes[h.ino] else { return }
        if node.dirty, h.flags.write || node.remote == nil {
            // The last chance to store what close() already tried; a failure keeps the staging
            // file and the node pinned so that unmount retries it.
            try? await commit(node)
        }
        node.openHandles -= 1
        if h.flags.write { node.writers -= 1 }
        if node.openHandles == 0 && !node.dirty {
            node.staging = nil
            if node.parent == nil && node.ino != rootInode { /* freed on forget */  }
        }
    }

    public func unlink(parent: InodeNumber, name: String) async throws(FSError) {
        try checkWritable()
        let dir = try directory(parent)
        let child = try await resolve(parent: parent, name: name)
        guard child.kind.isObject else { throw FSError(EISDIR, "\(name) is a directory") }
        // An upload of it in flight ends first (its object would show again for a moment).
        try await lock(child, for: "unlink")
        defer { unlock(child) }
        guard dir.children[name] == child.ino else { return try await unlink(parent: parent, name: name) }
        try await keepStoredPrefixLocally(child)
        let key = fileKey(child)
        try await keepDirectory(dir, removing: [key])
        if child.remote != nil || child.shadowsStoredObject {
            await syncJournalRecordsOrLog()
            do { try await storage.delete([key]) } catch { throw FSError.from(error, "unlink \(key)") }
        }
        detach(child, from: dir)
        noteRemoved(name, from: dir)
        forgetSealed(child)
    }

    /// A file that left the namespace: its version not stored yet is never sent now.
    private func forgetSealed(_ node: Node) {
        if let sealed = node.sealed {
            forgetVersion(sealed)
            node.sealed = nil
        }
    }

    public func rename(
        parent: InodeNumber, name: String, newParent: InodeNumber, newName: String, noReplace: Bool = false
    )
        async throws(FSError)
    {
        try checkWritable()
        let fromDir = try directory(parent)
        let toDir = try directory(newParent)
        try checkNewName(newName, in: toDir)
        let source = try await resolve(parent: parent, name: name)
        if source.kind.isObject { try checkObjectAllowed(in: toDir) }
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
            switch (source.kind.isObject, t.kind.isObject) {
            case (true, false): throw FSError(EISDIR, "\(newName) is a directory")
            case (false, true): throw FSError(ENOTDIR, "\(newName) is not a directory")
            default: break
            }
        }
        // No upload of either file runs while they move (one in flight ends first): an upload
        // ending after the rename would show the old name again for a moment, or store the
        // replaced file's bytes over the name the source now has.
        let files = [source, target].compactMap { $0 }.filter(\.kind.isObject).sorted { $0.ino < $1.ino }
        var locked: [Node] = []
        defer { for n in locked { unlock(n) } }
        for n in files {
            try await lock(n, for: "rename")
            locked.append(n)
        }
        guard fromDir.children[name] == source.ino, toDir.children[newName] == target?.ino else {
            // Changed while waiting: start again from what the names are now.
            for n in locked { unlock(n) }
            locked = []
            return try await rename(
                parent: parent, name: name, newParent: newParent, newName: newName, noReplace: noReplace)
        }
        if let t = target, t.kind.isObject { try await keepStoredPrefixLocally(t) }
        // Copy first; delete the originals only once every copy succeeded.
        var originals: [ObjectKey] = []
        var copies: [ObjectKey: ObjectInfo] = [:]
        if source.kind == .directory {
            var targetMarkers: [ObjectKey] = []
            if let t = target { targetMarkers = try await checkEmpty(t) }
            // Files closed under the directory are stored first, so that the copies take them
            // (one upload each, not an upload and a copy); an upload that still ends while the
            // keys are copied waits for the rename and is stored again under the new name.
            if let failure = await storeSealed(under: source).first { throw failure }
            directoryRenames += 1
            defer { endDirectoryRename() }
            let oldPrefix = directoryPrefix(source)
            (originals, copies) = try await copyDirectoryObjects(from: oldPrefix, to: directoryPrefix(toDir) + newName)
            // The replaced empty directory's markers go with the originals, unless a copy just
            // wrote the same key.
            originals += targetMarkers.filter { copies[$0] == nil }
            // The key `old` goes only if it was the directory's marker (a file of that name,
            // hidden by the directory, stays and keeps the parent).
            let oldMarker = String(oldPrefix.dropLast())
            try await keepDirectory(
                fromDir, removing: originals.contains(oldMarker) ? [oldPrefix, oldMarker] : [oldPrefix])
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
        } else if source.kind.isObject {
            let from = fileKey(source)
            // A file not stored yet leaves: what the server holds under its name (the object it
            // was to replace) goes, and the directory stays.
            if source.shadowsStoredObject { originals = [from] }
            if fromDir !== toDir { try await keepDirectory(fromDir, removing: [from]) }
            source.replaces = nil
        }
        if !originals.isEmpty {
            await syncJournalRecordsOrLog()
            do {
                try await storage.removeAfterMove(originals)
            } catch {
                throw FSError.from(error, "rename: delete \(originals[0])")
            }
        }
        if let t = target {
            detach(t, from: toDir)
            if source.remote == nil && t.kind.isObject { source.replaces = t.remote?.etag ?? t.replaces }
            // The replaced file's version not stored yet is never sent now (as for unlink).
            forgetSealed(t)
        }
        fromDir.children[name] = nil
        source.parent = toDir.ino
        source.name = newName
        source.changedAt = now
        toDir.children[newName] = source.ino
        toDir.negative[newName] = nil
        toDir.removed[newName] = nil
        fromDir.negative[name] = now + ttl
        noteRemoved(name, from: fromDir)
        // The files under a moved directory are new objects with new ETags: open handles keep
        // reading them without a stale error.
        if source.kind == .directory {
            adopt(copies, under: source)
            await recordSealed(under: source)
        } else if source.sealed != nil {
            try await recordSealed(source, wait: false)
        }
    }

    /// Uploads every dirty file (unmount, `objmount unmount`). Returns the failures.
    /// Lets the reads in flight finish filling the block cache (at most a few seconds), so that
    /// a remount finds what was read; stops background fills.
    public func settleReads() async {
        await prefetcher.settle(timeout: .seconds(5))
    }

    /// Stores every file with pending data that no handle still has open for writing (at exit:
    /// a file a program is still writing is never stored as a prefix of itself; `keepUnsaved`
    /// keeps it). Returns the failures.
    public func flushAll() async -> [FSError] {
        let failures = await storeSealed()
        // Nothing left for a later mount: the journal goes with this one.
        if let journal, journal.pending.isEmpty, journal.openUploads.isEmpty { journal.remove() }
        await staging.finishRecycling(timeout: .seconds(5))
        staging.removeKeptFiles()
        return failures
    }

    /// How many files have data not yet stored on the server.
    public var pendingUploads: Int { status().pendingFiles }

    /// Files not stored yet and their bytes (what unmount still has to send).
    public var pendingSummary: (files: Int, bytes: Int64) {
        let s = status()
        return (s.pendingFiles, s.pendingBytes)
    }
}
