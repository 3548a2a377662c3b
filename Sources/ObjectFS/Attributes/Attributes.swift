// Attributes: a server version's metadata applied to a node, the attributes `stat` shows,
// and the metadata an upload or a metadata update stores.

import ObjectStorage

extension ObjectFS {
    func apply(_ info: ObjectInfo, to n: Node) {
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

    func attributes(_ n: Node) -> FileAttributes {
        FileAttributes(
            ino: n.ino, kind: n.kind, size: n.kind == .file ? n.size : 0, mode: n.mode,
            uid: configuration.fixedOwner ? configuration.uid : n.uid ?? configuration.uid,
            gid: configuration.fixedOwner ? configuration.gid : n.gid ?? configuration.gid, mtime: n.mtime)
    }

    /// The stored version's content type and other metadata, with our mtime and mode.
    func putOptions(_ n: Node) -> PutOptions {
        var metadata = n.remote?.metadata ?? [:]
        metadata.merge(PosixMetadata.encode(mtime: n.mtime, mode: n.mode, uid: n.uid, gid: n.gid)) { $1 }
        return PutOptions(contentType: n.remote?.contentType, metadata: metadata)
    }
}
