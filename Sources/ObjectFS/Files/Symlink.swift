// Symlinks: one object whose body is the target, as s3fs stores them (doc/SEMANTICS.md,
// "Symlinks"); the kind of an entry is decided from its metadata in Attributes.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// Creates a symlink at once: one object whose body is `target`, with `mode` metadata of
    /// S_IFLNK|0777 (s3fs's convention) and the content type `inode/symlink`.
    public func symlink(parent: InodeNumber, name: String, target: String) async throws(FSError) -> FileAttributes {
        try checkWritable()
        let dir = try directory(parent)
        try checkNewName(name, in: dir)
        try checkObjectAllowed(in: dir)
        guard !target.isEmpty else { throw FSError(ENOENT, "empty symlink target") }
        guard target.utf8.count <= PosixMetadata.maximumTargetLength else {
            throw FSError(ENAMETOOLONG, "symlink target longer than \(PosixMetadata.maximumTargetLength) bytes")
        }
        if try await existing(parent: parent, name: name) != nil { throw FSError(EEXIST, "\(name) exists") }
        let key = directoryPrefix(dir) + name
        let mtime = clock.wallClock()
        let options = PutOptions(
            contentType: PosixMetadata.symlinkContentType,
            metadata: PosixMetadata.encode(mtime: mtime, mode: 0o777, kind: .symlink), isNew: true)
        let info: ObjectInfo
        do {
            info = try await storage.put(key, payload: .bytes(Array(target.utf8)), options: options)
        } catch {
            throw FSError.from(error, "symlink \(key)")
        }
        let node = addChild(to: dir, name: name, kind: .symlink)
        node.mtime = mtime
        apply(stored(info, with: options), to: node)
        node.changedAt = now
        node.size = Int64(target.utf8.count)
        node.target = target
        return attributes(node)
    }

    /// The target of a symlink: its object's body, read once per version.
    public func readlink(_ ino: InodeNumber) async throws(FSError) -> String {
        let node = try self.node(ino)
        guard node.kind == .symlink else { throw FSError(EINVAL, "not a symlink") }
        if let target = node.target { return target }
        guard let remote = node.remote else { throw FSError(EIO, "symlink without a stored object") }
        let key = fileKey(node)
        do {
            let bytes = try await storage.get(key, range: nil, ifMatch: remote.etag)
            guard bytes.count <= PosixMetadata.maximumTargetLength else {
                throw FSError(EIO, "\(key): a symlink of \(bytes.count) bytes is not a path")
            }
            let target = String(decoding: bytes, as: UTF8.self)
            if node.remote?.etag == remote.etag { node.target = target }
            return target
        } catch StorageError.preconditionFailed {
            // Changed since it was looked up: the next lookup sees the new version.
            node.validUntil = .min
            throw FSError(ESTALE, "\(key) changed on the server")
        } catch {
            throw FSError.from(error, "readlink \(key)")
        }
    }
}
