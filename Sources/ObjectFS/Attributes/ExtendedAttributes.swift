// Extended attributes: the driver's read-only object attributes under `user.objmount.`.

#if canImport(Glibc)
    import Glibc
#endif
import ObjectStorage

extension ObjectFS {
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

    func extendedAttributeNamesAnswered(_ name: String) -> Bool {
        guard let source = storage as? any ObjectAttributeSource else { return false }
        return source.attributeNames.contains { Self.attributeNamespace + $0 == name }
    }
}
