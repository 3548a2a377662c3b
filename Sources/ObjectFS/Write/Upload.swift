// Upload: the inode's staging file (created on first write, loaded from the stored object
// when an existing file is changed) and its upload as one PUT or a multipart upload.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    func newStagingFile() throws(FSError) -> StagingFile {
        try StagingFile(directory: staging, name: newStagingName())
    }

    /// `staged-<pid>-<instance>-<serial>`: the journal's recovery finds a dead mount's files by
    /// the part before the serial.
    func newStagingName() -> String {
        stagingSerial += 1
        return "staged-\(getpid())-\(instanceID)-\(stagingSerial)"
    }

    /// The inode's staging file, created on first use; with `loadExisting` it starts as a copy
    /// of the stored object (fetched in ranged pieces).
    func stagingFile(for node: Node, loadExisting: Bool) async throws(FSError) -> StagingFile {
        if let s = node.staging, s !== node.sealed { return s }
        if let sealed = node.staging {
            // The sealed version stays as a close acknowledged it: writes go to a copy (an
            // empty file when the caller truncates to 0 anyway).
            if !loadExisting {
                let fresh = try newStagingFile()
                node.staging = fresh
                return fresh
            }
            let copy = try await sealed.copy(as: newStagingName())
            if let s = node.staging, s !== node.sealed { return s }  // another writer was first
            node.staging = copy
            return copy
        }
        try await lock(node)
        defer { unlock(node) }
        if let s = node.staging { return s }
        let staging = try newStagingFile()
        if loadExisting, let remote = node.remote, remote.size > 0 {
            let key = fileKey(node)
            let chunk: Int64 = 8 << 20
            var offset: Int64 = 0
            do {
                while offset < remote.size {
                    let length = min(chunk, remote.size - offset)
                    await budget.reserve(length)
                    defer { budget.release(length) }
                    let bytes = try await storage.get(
                        key, range: ByteRange(offset: offset, length: length), ifMatch: remote.etag)
                    guard !bytes.isEmpty else { throw StorageError.malformedReply("short read of \(key)") }
                    try bytes.withUnsafeBytes { buffer in try staging.write(buffer, at: offset) }
                    offset += Int64(bytes.count)
                }
            } catch {
                throw FSError.from(error, "cannot load \(key) for writing")
            }
        }
        node.staging = staging
        return staging
    }

    /// Stores the file's sealed version (Write/WriteBack.swift), under the name the file has
    /// when the upload ends.
    func upload(_ node: Node) async throws(FSError) {
        try await lock(node)
        defer { unlock(node) }
        // A rename during the upload moves the target: store again under the new name, so that
        // a successful close always means the data is stored where the file now is.
        var renamedAway = false
        for _ in 0..<8 {
            renamedAway = false
            guard node.dirty, let sealed = node.sealed else { break }
            guard node.parent != nil else {
                // Deleted before it was stored: nothing to send.
                forgetVersion(sealed)
                node.sealed = nil
                break
            }
            let generation = node.sealedGeneration
            // The record of this key is durable before anything is stored under it.
            await syncJournalRecordsOrLog()
            let key = fileKey(node)
            // What the server holds at the key now: the version this upload replaces, unless
            // another client changed it since this mount read it (a conflict: both are kept).
            let current: ObjectInfo?
            do {
                current = try await storage.head(key)
            } catch StorageError.notFound {
                current = nil
            } catch {
                throw FSError.from(error, "upload \(key)")
            }
            if !node.recovered, current?.etag != (node.remote?.etag ?? node.replaces) {
                try await moveAsideForConflict(node, key: key, found: current)
                continue
            }
            if let remote = node.remote, remote.metadata == nil, node.userMetadata == nil, let current {
                // The version this replaces came from a listing without metadata: its user
                // metadata (extended attributes) is kept when the file is rewritten.
                node.remote = current
            }
            let sentMetadata = node.userMetadata
            let sent = (mode: node.mode, mtime: node.mtime, uid: node.uid, gid: node.gid)
            var options = putOptions(node)
            options.isNew = node.remote == nil && !node.recovered
            let info: ObjectInfo
            do {
                if sealed.size > configuration.multipartThreshold {
                    info = try await multipartUpload(key, staging: sealed, options: options)
                } else {
                    let payload = sealed.payload()
                    let inFlight = Self.streamingFootprint(payload)
                    await budget.reserve(inFlight)
                    defer { budget.release(inFlight) }
                    info = try await storage.put(key, payload: payload, options: options)
                }
            } catch {
                throw FSError.from(error, "upload \(key)")
            }
            await waitForDirectoryRenames()
            if node.parent == nil {
                // Unlinked while it was being uploaded.
                try? await storage.delete([key])
                continue
            }
            if fileKey(node) != key {
                try? await storage.delete([key])
                renamedAway = true
                continue
            }
            // A chmod, utimes or setxattr that arrived while the bytes were on their way.
            let metadataChanged =
                node.userMetadata != sentMetadata || node.mode != sent.mode || node.mtime != sent.mtime
                || node.uid != sent.uid || node.gid != sent.gid
            node.remote = stored(info, with: options)
            node.changedAt = now
            if node.recovered && sealed.size > configuration.multipartThreshold {
                await abortStaleUploads(of: key)
            }
            node.recovered = false
            if node.userMetadata == sentMetadata { node.userMetadata = nil }
            node.metadataKnown = true
            node.validUntil = now + ttl
            if metadataChanged { try await storeMetadata(node) }
            if node.sealed === sealed {
                node.sealed = nil
                // Writes that arrived since the seal keep the file dirty for the next close.
                if node.staging === sealed && node.generation == generation { node.dirty = false }
            }
            forgetVersion(sealed)
            renamedAway = false
            break
        }
        if renamedAway {
            throw FSError(EIO, "upload of \(fileKey(node)) kept being overtaken by renames")
        }
        // Nobody has the file open: the local copy is not needed any more and would go stale.
        if !node.dirty && node.openHandles == 0 { node.staging = nil }
    }

    /// Another client changed or created the object at `key` since this mount read it: the
    /// file is renamed to `NAME.conflict-<UTC time>` in its directory (and its journal record
    /// with it), to be stored there; the other client's object stays under NAME.
    func moveAsideForConflict(_ node: Node, key: ObjectKey, found: ObjectInfo?) async throws(FSError) {
        guard let dir = node.parent.flatMap({ nodes[$0] }) else { return }
        let base = "\(node.name).conflict-\(clock.wallClock().compactUTC)"
        var name = base
        var n = 1
        while dir.children[name] != nil {
            n += 1
            name = base + "-\(n)"
        }
        try checkNewName(name, in: dir)
        dir.children[node.name] = nil
        dir.negative[node.name] = nil
        node.name = name
        dir.children[name] = node.ino
        node.remote = nil
        node.replaces = nil
        // Durable before the upload under the new name: a crash must not store it under NAME.
        try await recordSealed(node, wait: true)
        configuration.log(
            "conflict: \(key) was \(found == nil ? "deleted" : "changed") on the server since this mount read it; "
                + "this mount's version is stored as \(fileKey(node))")
    }

    /// Memory an upload of `payload` holds at once: the HTTP client reads a staged file in
    /// 256 KiB chunks as it sends them (StorageHTTP's FileBody); a few are in flight.
    static func streamingFootprint(_ payload: Payload) -> Int64 { min(payload.length, 1 << 20) }

    func multipartUpload(_ key: ObjectKey, staging: StagingFile, options: PutOptions) async throws
        -> ObjectInfo
    {
        let size = staging.size
        let caps = storage.capabilities
        var partSize = max(configuration.partSize, caps.minimumPartSize)
        let maxParts = Int64(caps.maximumPartCount)
        if (size + partSize - 1) / partSize > maxParts { partSize = (size + maxParts - 1) / maxParts }
        let upload = try await storage.createMultipartUpload(key, options: options)
        let storage = self.storage
        do {
            let count = Int((size + partSize - 1) / partSize)
            let parts = try await withThrowingTaskGroup(of: UploadedPart.self) { group in
                var done: [UploadedPart] = []
                var next = 0
                func add() {
                    let number = next + 1
                    let offset = Int64(next) * partSize
                    let payload = staging.payload(offset: offset, length: min(partSize, size - offset))
                    // A part streams from the staging file: what it holds in memory at once
                    // (chunks being read and sent) is taken from the budget.
                    let budget = self.budget
                    let inFlight = Self.streamingFootprint(payload)
                    group.addTask {
                        await budget.reserve(inFlight)
                        defer { budget.release(inFlight) }
                        return try await storage.uploadPart(upload, number: number, payload: payload)
                    }
                    next += 1
                }
                while next < min(count, configuration.uploadConcurrency) { add() }
                while let part = try await group.next() {
                    done.append(part)
                    if next < count { add() }
                }
                return done.sorted { $0.number < $1.number }
            }
            return try await storage.completeMultipartUpload(upload, parts: parts)
        } catch {
            try? await storage.abortMultipartUpload(upload)
            throw error
        }
    }
}
