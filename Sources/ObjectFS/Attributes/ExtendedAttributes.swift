// Extended attributes: `user.*` attributes of files are the object's user metadata (encoded as
// UserMetadata describes), and the driver's read-only object attributes are `user.objmount.*`.
// Other namespaces (security, system, trusted) are not supported.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// The driver's read-only object attributes (ObjectAttributeSource) are the extended
    /// attributes `user.objmount.<name>` of files. Listing them costs no request; reading one
    /// asks the server.
    public static let attributeNamespace = "user.objmount."
    public static let userNamespace = "user."
    /// setxattr flags (linux/xattr.h).
    static let createOnly: Int32 = 1
    static let replaceOnly: Int32 = 2

    public func extendedAttributeNames(_ ino: InodeNumber) async throws(FSError) -> [String] {
        let node = try self.node(ino)
        guard node.kind == .file else { return [] }
        try await knowMetadata(node)
        var names = UserMetadata.attributeNames(in: userMetadata(of: node)).map { Self.userNamespace + $0 }
        if let source = storage as? any ObjectAttributeSource {
            names += source.attributeNames.map { Self.attributeNamespace + $0 }
        }
        return names
    }

    public func extendedAttribute(_ ino: InodeNumber, name: String) async throws(FSError) -> [UInt8] {
        let node = try self.node(ino)
        // Like a Linux filesystem without a handler for a namespace: ENOTSUP, which `ls -l`
        // remembers for the whole mount instead of asking again for every file.
        guard name.hasPrefix(Self.userNamespace) else { throw FSError(ENOTSUP, "no \(name): only user.* is supported") }
        guard node.kind == .file else { throw FSError(ENODATA, "no extended attribute \(name)") }
        if name.hasPrefix(Self.attributeNamespace), let source = storage as? any ObjectAttributeSource {
            let short = String(name.dropFirst(Self.attributeNamespace.count))
            guard source.attributeNames.contains(short) else { throw FSError(ENODATA, "no extended attribute \(name)") }
            do {
                return Array(try await source.attribute(short, of: fileKey(node)).utf8)
            } catch StorageError.notFound {
                throw FSError(ENODATA, "\(name): the object is not stored yet")
            } catch {
                throw FSError.from(error, "getxattr \(name)")
            }
        }
        try await knowMetadata(node)
        let key = UserMetadata.metadataName(for: String(name.dropFirst(Self.userNamespace.count)))
        guard let stored = userMetadata(of: node)[key] else { throw FSError(ENODATA, "no extended attribute \(name)") }
        return UserMetadata.decodeValue(stored)
    }

    /// Sets (`value`) or removes (nil) the attribute `name`. On a file being written the change
    /// rides along with its upload; on a stored file it is one metadata update.
    public func changeExtendedAttribute(_ ino: InodeNumber, name: String, value: [UInt8]?, flags: Int32 = 0)
        async throws(FSError)
    {
        let node = try self.node(ino)
        try checkWritable()
        if extendedAttributeNamesAnswered(name) { throw FSError(EPERM, "\(name) is read-only") }
        guard name.hasPrefix(Self.userNamespace), name.utf8.count > Self.userNamespace.utf8.count else {
            throw FSError(ENOTSUP, "only user.* extended attributes can be stored")
        }
        // Linux allows user.* attributes on regular files and directories only.
        guard node.kind == .file else {
            throw node.kind == .symlink
                ? FSError(EPERM, "symlinks have no user.* attributes")
                : FSError(ENOTSUP, "directories have no extended attributes")
        }
        try await knowMetadata(node)
        var metadata = userMetadata(of: node)
        let key = UserMetadata.metadataName(for: String(name.dropFirst(Self.userNamespace.count)))
        let exists = metadata[key] != nil
        if flags & Self.createOnly != 0 && exists { throw FSError(EEXIST, "\(name) exists") }
        if (flags & Self.replaceOnly != 0 || value == nil) && !exists {
            throw FSError(ENODATA, "no extended attribute \(name)")
        }
        metadata[key] = value.map(UserMetadata.encodeValue)
        var all = metadata
        all.merge(PosixMetadata.encode(mtime: node.mtime, mode: node.mode, uid: node.uid, gid: node.gid)) { $1 }
        if let errno = UserMetadata.check(all, against: storage.capabilities.userMetadataLimits) {
            throw FSError(errno, "\(name): over the server's user metadata limit")
        }
        node.userMetadata = metadata
        if node.dirty {
            // Rides along with the upload to come (or is stored after the one in progress).
            if node.writers == 0 {
                try await commit(node)
            } else if node.sealed != nil {
                try await recordSealed(node, wait: false)
            }
        } else if node.remote != nil {
            try await storeMetadata(node)
        }
    }

    /// The user metadata a file has now: changed locally, else the stored version's.
    func userMetadata(of node: Node) -> [String: String] {
        node.userMetadata ?? node.remote?.metadata ?? [:]
    }

    /// Reads a stored file's metadata if its listing carried none.
    func knowMetadata(_ node: Node) async throws(FSError) {
        guard node.parent != nil, !node.isPinned, node.userMetadata == nil, node.remote?.metadata == nil else { return }
        try await completeMetadata(node)
    }

    func extendedAttributeNamesAnswered(_ name: String) -> Bool {
        guard let source = storage as? any ObjectAttributeSource else { return false }
        return source.attributeNames.contains { Self.attributeNamespace + $0 == name }
    }
}
