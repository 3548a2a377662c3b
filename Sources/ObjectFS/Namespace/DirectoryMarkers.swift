// Directory markers: `dir/` (S3) or `dir` + application/directory (Swift) keep a directory
// that has no other object; emptiness checks and the marker written before a last entry goes.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// Checks that a directory is empty on the server and locally; returns its marker keys
    /// (to delete).
    func checkEmpty(_ dir: Node) async throws(FSError) -> [ObjectKey] {
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

    /// Writes the driver's marker of the directory `key` (no trailing "/"), with `metadata`.
    func putMarker(directoryKey key: String, metadata: [String: String] = [:]) async throws {
        switch storage.capabilities.directoryMarkerStyle {
        case .trailingSlash:
            _ = try await storage.put(
                key + "/", payload: .bytes([]),
                options: PutOptions(contentType: KeyPath.s3DirectoryContentType, metadata: metadata))
        case .applicationDirectory:
            _ = try await storage.put(
                key, payload: .bytes([]),
                options: PutOptions(contentType: KeyPath.swiftDirectoryContentType, metadata: metadata))
        }
    }

    /// The key of the driver's marker of directory `dir`.
    func markerKey(_ dir: Node) -> ObjectKey {
        let dirPrefix = directoryPrefix(dir)
        switch storage.capabilities.directoryMarkerStyle {
        case .trailingSlash: return dirPrefix
        case .applicationDirectory: return String(dirPrefix.dropLast())
        }
    }

    /// The metadata a directory's marker keeps: mtime, mode (S_IFDIR, as s3fs), owner.
    func directoryMetadata(_ dir: Node) -> [String: String] {
        PosixMetadata.encode(mtime: dir.mtime, mode: dir.mode, uid: dir.uid, gid: dir.gid, kind: .directory)
    }

    /// Stores a directory's mode, mtime and owner on its marker (written if the directory was
    /// implicit).
    func storeDirectoryMetadata(_ dir: Node) async throws(FSError) {
        guard dir.ino != rootInode, dir.parent != nil else { return }
        let key = String(directoryPrefix(dir).dropLast())
        do {
            try await putMarker(directoryKey: key, metadata: directoryMetadata(dir))
        } catch {
            throw FSError.from(error, "cannot store attributes of directory \(key)")
        }
    }

    /// Reads a directory's mode, mtime and owner from its marker, once (a directory without a
    /// marker keeps the defaults).
    func completeDirectoryMetadata(_ dir: Node) async throws(FSError) {
        guard dir.ino != rootInode, dir.parent != nil, !dir.metadataKnown else { return }
        if await prefetchedMetadata(dir) { return }
        let key = markerKey(dir)
        do {
            let info = try await storage.head(key)
            applyDirectoryMetadata(info, to: dir)
        } catch StorageError.notFound {
            dir.metadataKnown = true
        } catch {
            throw FSError.from(error, "lookup \(key)")
        }
    }

    func applyDirectoryMetadata(_ info: ObjectInfo, to dir: Node) {
        guard let meta = info.metadata else { return }
        dir.metadataKnown = true
        if let t = meta["mtime"].flatMap(Timestamp.init(metadataValue:)) { dir.mtime = t }
        if let m = meta["mode"].flatMap({ UInt32($0) }) { dir.mode = m & 0o7777 }
        if let uid = meta["uid"].flatMap({ UInt32($0) }) { dir.uid = uid }
        if let gid = meta["gid"].flatMap({ UInt32($0) }) { dir.gid = gid }
    }

    /// Before the last entry of a directory without a marker is removed, writes a marker so
    /// that the directory stays, as it would on a disk. `removing` names the listing entries
    /// (keys or common prefixes) about to go. A failure is reported before anything is deleted.
    func keepDirectory(_ dir: Node, removing: Set<String>) async throws(FSError) {
        guard dir.ino != rootInode, dir.parent != nil else { return }
        // A fresh, complete listing with other children answers without asking the server.
        if dir.listedUntil >= now && dir.children.count > 1 { return }
        // A file not stored yet keeps the directory: its upload makes the directory's key.
        for ino in dir.children.values {
            if let n = nodes[ino], n.kind.isObject, n.dirty, n.remote == nil, !removing.contains(fileKey(n)) { return }
        }
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
}
