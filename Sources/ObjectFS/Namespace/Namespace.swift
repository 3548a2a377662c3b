// Namespace: the inode table's lookups — key <-> path, resolve with TTLs and the negative
// cache, listings, and attaching/detaching nodes. Pinned nodes (open, dirty, new) are never
// replaced by a server view.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    // MARK: - Namespace internals

    var now: Int64 { clock.monotonicNanoseconds() }
    var ttl: Int64 {
        let c = configuration.metadataTTL.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    func node(_ ino: InodeNumber) throws(FSError) -> Node {
        guard let n = nodes[ino] else { throw FSError(ENOENT, "stale inode \(ino)") }
        n.referenced = true
        return n
    }

    func directory(_ ino: InodeNumber) throws(FSError) -> Node {
        let n = try node(ino)
        guard n.kind == .directory else { throw FSError(ENOTDIR, "not a directory") }
        return n
    }

    func checkWritable() throws(FSError) {
        if configuration.readOnly { throw FSError(EROFS, "read-only mount") }
    }

    func checkNewName(_ name: String, in dir: Node) throws(FSError) {
        if name.utf8.count > KeyPath.maximumNameLength { throw FSError(ENAMETOOLONG, "name too long") }
        guard KeyPath.isRepresentable(name) else { throw FSError(EINVAL, "invalid name") }
        if (directoryPrefix(dir) + name).utf8.count + 1 > KeyPath.maximumKeyLength {
            throw FSError(ENAMETOOLONG, "object key would exceed \(KeyPath.maximumKeyLength) bytes")
        }
    }

    /// Refuses a file, symlink or special file in `dir` when the store could never hold it
    /// (the top of an account-level mount holds only buckets): at once, not at a later upload.
    func checkObjectAllowed(in dir: Node) throws(FSError) {
        if dir.ino == rootInode && prefix.isEmpty && !storage.capabilities.topLevelObjects {
            throw FSError(EACCES, "only buckets (directories) live at the top of an account")
        }
    }

    /// The key prefix of a directory's children: the mount prefix plus its path plus "/".
    func directoryPrefix(_ dir: Node) -> String {
        var parts: [String] = []
        var cur: Node? = dir
        while let n = cur, n.ino != rootInode {
            parts.append(n.name)
            cur = n.parent.flatMap { nodes[$0] }
        }
        return parts.isEmpty ? prefix : prefix + parts.reversed().joined(separator: "/") + "/"
    }

    func fileKey(_ file: Node) -> ObjectKey {
        guard let p = file.parent.flatMap({ nodes[$0] }) else { return file.detachedKey ?? prefix + file.name }
        return directoryPrefix(p) + file.name
    }

    /// The node at `name`, or nil if there is none; other failures (EIO...) are thrown, never
    /// taken for "does not exist".
    func existing(parent: InodeNumber, name: String) async throws(FSError) -> Node? {
        do {
            return try await resolve(parent: parent, name: name)
        } catch {
            if error.errno == ENOENT { return nil }
            throw error
        }
    }

    func resolve(parent: InodeNumber, name: String) async throws(FSError) -> Node {
        let dir = try directory(parent)
        if name.utf8.count > KeyPath.maximumNameLength { throw FSError(ENAMETOOLONG, "name too long") }
        guard KeyPath.isRepresentable(name) else { throw FSError(ENOENT, "no such entry") }
        let t = now
        if let ino = dir.children[name], let n = nodes[ino], trustedUntil(n) >= t {
            if n.kind.isObject && !n.metadataKnown && !n.isPinned { try await completeMetadata(n) }
            if n.kind == .directory && !n.metadataKnown { try await completeDirectoryMetadata(n) }
            return n
        }
        if dir.children[name] == nil && dir.listedUntil >= t {
            throw FSError(ENOENT, "no such entry")
        }
        if let until = dir.negative[name], until >= t { throw FSError(ENOENT, "no such entry") }
        // A file whose attributes expired (or were never read, and its listing expired): its
        // HEAD goes with those of its next such siblings, so that `ls -l` of a large directory
        // some seconds after the last one, or `find` in a directory whose listing expires before
        // it has stat'ed every file, waits a round trip per batch, not one per file.
        if let ino = dir.children[name], let n = nodes[ino], n.kind.isObject, await prefetchedMetadata(n) {
            return n
        }
        let key = directoryPrefix(dir) + name
        // A name last seen as an object is most likely one still.
        let object = dir.children[name].flatMap { nodes[$0] }.map(\.kind.isObject) ?? (dir.droppedObjects[name] != nil)
        let found: (kind: FileKind, info: ObjectInfo?, unmarked: Bool)?
        do {
            found = try await probe(key, object: object)
        } catch {
            throw FSError.from(error, "lookup \(key)")
        }
        if !dir.droppedObjects.isEmpty { dir.droppedObjects[name] = nil }
        // The actor may have changed the directory while we waited; a directory holding files
        // not stored yet exists whatever the server says.
        if let ino = dir.children[name], let n = nodes[ino], heldAgainstServer(n, askedAt: t) { return n }
        if dir.children[name] == nil, let removed = dir.removed[name], removed >= t {
            throw FSError(ENOENT, "no such entry")
        }
        guard let found else {
            if let ino = dir.children[name], let n = nodes[ino] { detachGone(n, from: dir) }
            dir.negative[name] = now + ttl
            throw FSError(ENOENT, "no such entry")
        }
        dir.negative[name] = nil
        let n = upsert(dir, name: name, kind: found.kind, info: found.info)
        if n.kind == .directory && !n.metadataKnown {
            // No marker to read (two round trips fewer before `ls DIR` can start).
            if found.unmarked { n.metadataKnown = true } else { try await completeDirectoryMetadata(n) }
        }
        return n
    }

    /// What the server has at `key`: a directory (listing under `key/` not empty, or a marker),
    /// a file, or nothing. The HEAD and the 1-key LIST run in parallel; for a name last seen as
    /// an `object`, the LIST only if the HEAD finds none (that such a name became a directory
    /// too shows at the next listing of its directory: SEMANTICS.md). `unmarked`: a directory
    /// the answers show has no marker at all (no object at `key`, and the first key under
    /// `key/` — where a `key/` marker would sort — is another), so its metadata is known.
    func probe(_ key: ObjectKey, object: Bool = false) async throws -> (
        kind: FileKind, info: ObjectInfo?, unmarked: Bool
    )? {
        let storage = self.storage
        @Sendable func head() async throws -> ObjectInfo? {
            do { return try await storage.head(key) } catch StorageError.notFound { return nil }
        }
        @Sendable func listing() async throws -> ListPage {
            try await storage.list(prefix: key + "/", delimiter: "/", continuation: nil, maxKeys: 1)
        }
        let h: ObjectInfo?
        let l: ListPage
        if object {
            h = try await head()
            if let h, !KeyPath.isDirectoryMarker(h) {
                return (PosixMetadata.isSymlink(h) == true ? .symlink : .file, h, false)
            }
            l = try await listing()
        } else {
            async let headed = head()
            async let listed = listing()
            (h, l) = try await (headed, listed)
        }
        if !l.objects.isEmpty || !l.commonPrefixes.isEmpty {
            if let h, KeyPath.isDirectoryMarker(h) { return (.directory, h, false) }
            // An S3-style marker sorts first in the listing of its prefix.
            if let marker = l.objects.first, marker.key == key + "/" { return (.directory, marker, false) }
            return (.directory, nil, h == nil)
        }
        if let h {
            if KeyPath.isDirectoryMarker(h) { return (.directory, h, false) }
            return (PosixMetadata.isSymlink(h) == true ? .symlink : .file, h, false)
        }
        return nil
    }

    func isPinnedTree(_ n: Node) -> Bool { heldAgainstServer(n, askedAt: .max) }

    /// Whether `n` stays whatever a listing or HEAD asked at `askedAt` says: it (or a file
    /// under it) is pinned, or this mount stored or moved it since.
    func heldAgainstServer(_ n: Node, askedAt: Int64) -> Bool {
        if n.isPinned || n.changedAt >= askedAt { return true }
        guard n.kind == .directory else { return false }
        return n.children.values.contains { nodes[$0].map { heldAgainstServer($0, askedAt: askedAt) } ?? false }
    }

    /// Marks `name` as removed from `dir` by this mount (see `Node.removed`).
    func noteRemoved(_ name: String, from dir: Node) {
        let t = now
        // Kept to a bound in a directory never listed again (`rm -rf` of many files).
        if dir.removed.count >= 1024 { dir.removed.removeAll { $0 < t - ttl } }
        dir.removed[name] = t
    }

    @discardableResult
    func upsert(_ dir: Node, name: String, kind listed: FileKind, info: ObjectInfo?) -> Node {
        var kind = listed
        if listed == .file, let info {
            if let symlink = PosixMetadata.isSymlink(info) {
                kind = symlink ? .symlink : .file
            } else if let ino = dir.children[name], let n = nodes[ino], n.remote?.etag == info.etag, n.remote != nil {
                // A listing that cannot tell (S3): the same version keeps what its HEAD said.
                kind = n.kind
            }
        }
        if let ino = dir.children[name], let n = nodes[ino] {
            if n.kind == kind || isPinnedTree(n) {
                if n.kind.isObject, let info, !n.isPinned { apply(info, to: n) }
                if n.kind == .directory { n.validUntil = now + ttl }
                return n
            }
            detachGone(n, from: dir)
        }
        let n = addChild(to: dir, name: name, kind: kind)
        if let info {
            if kind.isObject {
                apply(info, to: n)
            } else {
                // A directory with a marker: its mode, mtime and owner are the marker's metadata,
                // read with a HEAD if the listing did not carry them.
                n.mtime = info.lastModified
                n.metadataKnown = false
                applyDirectoryMetadata(info, to: n)
            }
        } else if kind == .directory && storage.capabilities.directoryMarkerStyle == .trailingSlash {
            // A common prefix hides whether `name/` exists as a marker.
            n.metadataKnown = false
        }
        n.validUntil = now + ttl
        return n
    }

    func addChild(to dir: Node, name: String, kind: FileKind) -> Node {
        let ino = nextInode
        nextInode += 1
        let mode: UInt32 = (kind == .directory ? 0o777 : 0o666) & ~configuration.umask
        let n = Node(ino: ino, kind: kind, parent: dir.ino, name: name, mode: mode, mtime: clock.wallClock())
        nodes[ino] = n
        dir.children[name] = ino
        dir.negative[name] = nil
        dir.removed[name] = nil
        if !dir.droppedObjects.isEmpty { dir.droppedObjects[name] = nil }
        inodeQueue.append(ino)
        enforceInodeLimit()
        return n
    }

    /// `detach` of a name the server no longer has, or has as something else. The kernel may
    /// keep what it was told of the name for the rest of its validity: it is told to forget the
    /// name now.
    func detachGone(_ n: Node, from dir: Node) {
        let name = n.name
        detach(n, from: dir)
        configuration.invalidateEntry?(dir.ino, name)
    }

    /// Removes a node from its directory. The kernel may still hold the inode; it is freed on
    /// forget (or kept while handles are open).
    func detach(_ n: Node, from dir: Node) {
        if n.kind.isObject && n.parent != nil { n.detachedKey = fileKey(n) }
        if dir.children[n.name] == n.ino { dir.children[n.name] = nil }
        n.parent = nil
        for ino in n.children.values {
            if let c = nodes[ino] { detach(c, from: n) }
        }
    }
}
