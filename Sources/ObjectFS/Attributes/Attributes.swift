// Attributes: a server version's metadata applied to a node, the attributes `stat` shows,
// and the metadata an upload or a metadata update stores.

import ObjectStorage

extension ObjectFS {
    func apply(_ listed: ObjectInfo, to n: Node) {
        let sameVersion = n.remote?.etag != nil && n.remote?.etag == listed.etag
        var info = listed
        if sameVersion {
            // A listing of the same version says less than its HEAD did: keep what is known.
            if info.metadata == nil { info.metadata = n.remote?.metadata }
            if info.contentType == nil { info.contentType = n.remote?.contentType }
        }
        if !sameVersion {
            n.target = nil
            if !n.isPinned { n.userMetadata = nil }
        }
        // What the object is, once its own metadata (or content type) says so. A node's kind
        // changes only before the kernel learns it (listing entries of unknown kind are not
        // given to the kernel with a type).
        if !n.isPinned {
            if KeyPath.isDirectoryMarker(info) && n.kind.isObject && info.metadata != nil {
                // A Swift-style marker seen through a listing without content types (S3).
                n.kind = .directory
                n.mode = 0o777 & ~configuration.umask
            } else if n.kind.isObject, let symlink = PosixMetadata.isSymlink(info) {
                n.kind = symlink ? .symlink : .file
            }
        }
        if info.metadata != nil {
            n.metadataKnown = true
        } else if !sameVersion {
            n.metadataKnown = configuration.listingMetadataTrusted
        }
        if let meta = info.metadata {
            n.mtime = meta["mtime"].flatMap(Timestamp.init(metadataValue:)) ?? info.lastModified
            if let m = meta["mode"].flatMap({ UInt32($0) }) { n.mode = n.kind == .symlink ? 0o777 : m & 0o7777 }
            n.uid = meta["uid"].flatMap { UInt32($0) }
            n.gid = meta["gid"].flatMap { UInt32($0) }
        } else if !sameVersion {
            n.mtime = info.lastModified
        }
        n.remote = info
        n.size = n.kind == .directory ? 0 : info.size
        n.validUntil = now + ttl
    }

    /// Whether a listing told what the entry is. An S3 listing of a small object without
    /// metadata cannot tell a file from a symlink (or a 0-byte Swift-style marker from an empty
    /// file) until the object's HEAD.
    func kindKnown(_ n: Node) -> Bool {
        guard n.kind.isObject, !n.metadataKnown, !n.isPinned, let remote = n.remote else { return true }
        return PosixMetadata.isSymlink(remote) != nil || remote.size > Int64(PosixMetadata.maximumTargetLength)
    }

    func attributes(_ n: Node) -> FileAttributes {
        var a = FileAttributes(
            ino: n.ino, kind: n.kind, size: n.kind.isObject ? n.size : 0, mode: n.kind == .symlink ? 0o777 : n.mode,
            uid: configuration.fixedOwner ? configuration.uid : n.uid ?? configuration.uid,
            gid: configuration.fixedOwner ? configuration.gid : n.gid ?? configuration.gid, mtime: n.mtime)
        let t = now
        let until = min(trustedUntil(n), t + ttl)
        a.trustedFor = until > t ? Double(until - t) / 1e9 : 0  // `validUntil` may be .min
        return a
    }

    /// Until when (monotonic ns) `n`'s name and attributes are trusted without asking the
    /// server: forever for what this mount holds (it changes only through this mount); a file
    /// until `validUntil`; a directory also while its parent's listing is fresh, and for a TTL
    /// after this mount made or moved it.
    func trustedUntil(_ n: Node) -> Int64 {
        if n.isPinned || n.ino == rootInode { return .max }
        guard n.kind == .directory else { return n.validUntil }
        let listed = n.parent.flatMap { nodes[$0] }?.listedUntil ?? .min
        let changed = n.changedAt == .min ? Int64.min : n.changedAt + ttl
        return max(n.validUntil, listed, changed)
    }

    /// The stored version's content type and other metadata (or the user metadata changed
    /// since), with our mtime and mode.
    func putOptions(_ n: Node) -> PutOptions {
        var metadata = n.userMetadata ?? n.remote?.metadata ?? [:]
        metadata.merge(PosixMetadata.encode(mtime: n.mtime, mode: n.mode, uid: n.uid, gid: n.gid, kind: n.kind)) { $1 }
        return PutOptions(contentType: n.remote?.contentType, metadata: metadata)
    }

    /// What the server returns for a write made with `options`, with the content type and
    /// metadata filled in where its reply left them out.
    func stored(_ info: ObjectInfo, with options: PutOptions) -> ObjectInfo {
        var info = info
        if info.contentType == nil { info.contentType = options.contentType }
        if info.metadata == nil { info.metadata = options.metadata }
        return info
    }

    /// Stores the node's metadata (mtime, mode, owner, user metadata) on its object with one
    /// metadata update: a copy onto itself (S3), a POST (Swift).
    func storeMetadata(_ node: Node) async throws(FSError) {
        let key = fileKey(node)
        do {
            if node.remote?.metadata == nil {
                // A listing carried no metadata: fetch it, so the copy keeps it.
                let head = try await storage.head(key)
                if head.etag == node.remote?.etag { node.remote = head }
            }
            let options = putOptions(node)
            let info = try await storage.copy(from: key, to: key, replacing: options)
            node.remote = stored(info, with: options)
            node.userMetadata = nil
            node.metadataKnown = true
            node.validUntil = now + ttl
        } catch {
            throw FSError.from(error, "cannot store attributes of \(key)")
        }
    }
}
