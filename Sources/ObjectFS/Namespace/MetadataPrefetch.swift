// Metadata prefetch: a listing without metadata (Swift, S3) gives sizes but not mtime/mode;
// the first stat in a directory starts HEADs of its next siblings, a batch at a time.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// Reads a file's metadata (mtime, mode) with a HEAD when its listing did not carry it.
    /// The first such file of a directory also starts HEADs of its next siblings (in name
    /// order, `metadataPrefetch` at a time), so that `ls -l` waits about one round trip per
    /// batch rather than one per file.
    func completeMetadata(_ n: Node) async throws(FSError) {
        if n.kind == .directory { return try await completeDirectoryMetadata(n) }
        if await prefetchedMetadata(n) { return }
        let key = fileKey(n)
        do {
            let info = try await storage.head(key)
            if !n.isPinned { apply(info, to: n) }
        } catch StorageError.notFound {
            if let p = n.parent.flatMap({ nodes[$0] }), !n.isPinned { detachGone(n, from: p) }
            throw FSError(ENOENT, "no such entry")
        } catch {
            throw FSError.from(error, "lookup \(key)")
        }
    }

    /// Whether the batch HEAD of `n` (started here with its siblings' if none is in flight)
    /// answered with the version it knew: its metadata is read (again, for a file whose
    /// attributes expired) and trusted. False: the caller asks the server itself (a changed or
    /// deleted object, an error).
    func prefetchedMetadata(_ n: Node) async -> Bool {
        guard configuration.metadataPrefetch > 0 else { return false }
        if metadataFetches[n.ino] == nil { prefetchMetadata(from: n) }
        guard let fetch = metadataFetches[n.ino] else { return false }
        await fetch.value
        return n.isPinned || (nodes[n.ino] === n && !needsMetadata(n))
    }

    /// A file or directory whose metadata a batch HEAD would read: never read, or (a file)
    /// read and expired since.
    private func needsMetadata(_ c: Node) -> Bool {
        !c.metadataKnown || (c.kind.isObject && c.validUntil < now)
    }

    /// Starts HEADs of `n` and of up to `metadataPrefetchBatch` siblings after it whose
    /// metadata is unknown or expired; each applies its answer when it comes.
    func prefetchMetadata(from n: Node) {
        guard let dir = n.parent.flatMap({ nodes[$0] }) else { return }
        let names = dir.children.names(from: n.name, limit: configuration.metadataPrefetchBatch)
        let limiter = metadataLimiter
        let storage = self.storage
        for name in names {
            guard let ino = dir.children[name], let c = nodes[ino], needsMetadata(c), !c.isPinned,
                metadataFetches[ino] == nil
            else { continue }
            let key = c.kind == .directory ? markerKey(c) : fileKey(c)
            let etag = c.remote?.etag
            metadataFetches[ino] = Task {
                await limiter.acquire()
                let started = self.now
                var info: ObjectInfo? = nil
                var missing = false
                do { info = try await storage.head(key) } catch StorageError.notFound { missing = true } catch {}
                let took = self.now - started
                await limiter.release()
                if let width = self.finishMetadataFetch(ino, info, missing: missing, listedETag: etag, took: took) {
                    // Deltas: resizes applied in another order than decided end at the same width.
                    await limiter.resize(from: width.old, to: width.new)
                }
            }
        }
    }

    /// Applies a HEAD's answer (`missing`: the server has no such object); returns the HEADs'
    /// new width when this answer changed it.
    func finishMetadataFetch(
        _ ino: InodeNumber, _ info: ObjectInfo?, missing: Bool, listedETag: ETag?, took nanoseconds: Int64
    ) -> (old: Int, new: Int)? {
        metadataFetches[ino] = nil
        var resized: (old: Int, new: Int)? = nil
        if info != nil, let old = metadataWidth?.width, let new = metadataWidth?.record(nanoseconds: nanoseconds) {
            resized = (old, new)
        }
        apply(info, missing: missing, fetchedFor: ino, listedETag: listedETag)
        return resized
    }

    private func apply(_ info: ObjectInfo?, missing: Bool, fetchedFor ino: InodeNumber, listedETag: ETag?) {
        // Only the version the listing showed: anything else is left to the caller's own HEAD.
        guard let n = nodes[ino], !n.isPinned, needsMetadata(n) else { return }
        if n.kind == .directory {
            // No marker: nothing to read. A failed HEAD: the caller's own HEAD decides.
            if let info { applyDirectoryMetadata(info, to: n) } else if missing { n.metadataKnown = true }
            return
        }
        guard let info, info.etag == listedETag else { return }
        apply(info, to: n)
    }
}
