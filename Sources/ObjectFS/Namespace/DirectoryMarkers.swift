// Directory markers: `dir/` (S3) or `dir` + application/directory (Swift) keep a directory
// that has no other object; emptiness checks and the marker written before a last entry goes.

#if canImport(Glibc)
    import Glibc
#endif
import ObjectStorage

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

    func putMarker(directoryKey key: String) async throws {
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
    func keepDirectory(_ dir: Node, removing: Set<String>) async throws(FSError) {
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
}
