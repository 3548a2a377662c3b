// Rename of a directory tree: copy every key under the old prefix, then (caller) delete the
// originals; open handles under the moved tree adopt the copies' versions.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// Copies every object under `from` (a directory prefix ending in "/") to the directory key
    /// `to`, with a Swift-style marker `from` minus "/" if there is one. Returns the originals
    /// (for the caller to delete) and the copies. If a copy fails, the copies made so far are
    /// removed and the source is left whole.
    func copyDirectoryObjects(from: String, to: String) async throws(FSError) -> (
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

    func adopt(_ copies: [ObjectKey: ObjectInfo], under dir: Node) {
        for ino in dir.children.values {
            guard let n = nodes[ino] else { continue }
            if n.kind == .directory {
                adopt(copies, under: n)
            } else if n.remote != nil, let info = copies[fileKey(n)] {
                n.remote = info
                n.changedAt = now
            }
        }
    }
}
