// Upload: the inode's staging file (created on first write, loaded from the stored object
// when an existing file is changed, or kept on the server when it is extended) and its upload
// as one PUT or a multipart upload.

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
    /// of the stored object (fetched in ranged pieces) — unless the first write is at or past
    /// its end (`writingAt`) and its upload can copy the stored bytes on the server: then they
    /// stay there, as the file's stored prefix.
    func stagingFile(for node: Node, loadExisting: Bool, writingAt: Int64 = 0) async throws(FSError)
        -> StagingFile
    {
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
        try await lock(node, for: "loading for a write")
        defer { unlock(node) }
        if let s = node.staging { return s }
        let staging = try newStagingFile()
        if loadExisting, let remote = node.remote, remote.size > 0 {
            if writingAt >= remote.size && keepsStoredPrefix(remote.size) {
                try staging.truncate(to: remote.size)
                staging.storedPrefix = remote.size
            } else {
                try await load(ByteRange(offset: 0, length: remote.size), of: remote, at: fileKey(node), into: staging)
            }
        }
        node.staging = staging
        return staging
    }

    /// A file whose stored object is about to go (unlinked, replaced by a rename) while it is
    /// open: the stored prefix of its staging file comes here first, for its readers.
    func keepStoredPrefixLocally(_ node: Node) async throws(FSError) {
        guard node.openHandles > 0, let staging = node.staging, staging.storedPrefix > 0 else { return }
        try await fillStoredPrefix(staging, of: node)
    }

    static func lostPrefix(_ key: ObjectKey, _ staging: StagingFile) -> FSError {
        FSError(
            EIO,
            "\(key) was changed on the server by another client while this mount was extending it: its first "
                + "\(staging.storedPrefix) bytes were that version's and are gone; the rest is kept in \(staging.path)")
    }

    /// Whether a file of `size` stored bytes that is extended keeps them on the server: the
    /// server copies parts, and the file is large enough (8 MiB, or the multipart threshold if
    /// lower) for a multipart upload that copies them to cost less than sending them again.
    func keepsStoredPrefix(_ size: Int64) -> Bool {
        let caps = storage.capabilities
        return caps.copiesParts && size >= max(caps.minimumPartSize, min(configuration.multipartThreshold, 8 << 20))
    }

    /// Writes `range` of the stored version `remote` into `staging` (ranged GETs of 8 MiB),
    /// never past the staging file's stored prefix when it has one (a truncate may shrink it
    /// meanwhile).
    private func load(_ range: ByteRange, of remote: ObjectInfo, at key: ObjectKey, into staging: StagingFile)
        async throws(FSError)
    {
        let chunk: Int64 = 8 << 20
        var offset = range.offset
        let based = staging.storedPrefix > 0
        do {
            while offset < range.end {
                let length = min(chunk, range.end - offset)
                await budget.reserve(length)
                defer { budget.release(length) }
                var bytes = try await storage.get(
                    key, range: ByteRange(offset: offset, length: length), ifMatch: remote.etag)
                guard !bytes.isEmpty else { throw StorageError.malformedReply("short read of \(key)") }
                if based {
                    let room = max(0, staging.storedPrefix - offset)
                    if room < bytes.count { bytes.removeLast(bytes.count - Int(room)) }
                    if bytes.isEmpty { return }
                }
                try bytes.withUnsafeBytes { buffer in try staging.write(buffer, at: offset) }
                offset += Int64(bytes.count)
            }
        } catch {
            throw FSError.from(error, "cannot load \(key) for writing")
        }
    }

    /// Brings the stored prefix of `staging` (a staging file of `node`) into it, so that it can
    /// be written anywhere or stored without the server's copy. One download at a time per file.
    func fillStoredPrefix(_ staging: StagingFile, of node: Node) async throws(FSError) {
        while staging.storedPrefix > 0 {
            if let running = staging.prefixFill {
                if let error = await running.value { throw error }
                continue
            }
            guard let remote = node.remote else { throw Self.lostPrefix(fileKey(node), staging) }
            let key = fileKey(node)
            let length = staging.storedPrefix
            let fill = Task { () async -> FSError? in
                do throws(FSError) {
                    try await self.load(ByteRange(offset: 0, length: length), of: remote, at: key, into: staging)
                    return nil
                } catch {
                    return error
                }
            }
            staging.prefixFill = fill
            let error = await fill.value
            staging.prefixFill = nil
            if let error { throw error }
            staging.storedPrefix = 0
        }
    }

    /// Stores the file's sealed version (Write/WriteBack.swift), under the name the file has
    /// when the upload ends.
    func upload(_ node: Node) async throws(FSError) {
        try await lock(node, for: "upload")
        defer { unlock(node) }
        // A rename during the upload moves the target: store again under the new name, so that
        // a successful close always means the data is stored where the file now is.
        var renamedAway = false
        // The server answered a PUT with the condition by a refusal of the request (4xx, 501):
        // sent again without it, and if that is stored, the header was what it refused.
        var refusedWithCondition: StorageError?
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
            // The records naming this key are durable before anything is stored under it (the
            // key looked at again after a sync: a rename may have come meanwhile).
            node.lockedFor = "upload: journal sync"
            var key = fileKey(node)
            while unsyncedRecords(naming: key), await syncJournalRecordsOrLog() { key = fileKey(node) }
            // A file this mount created replaces nothing: its PUT carries `If-None-Match: *`,
            // and where the server is known to honour it, that PUT finds a conflict by itself.
            let expectsNone = !node.recovered && node.remote == nil && node.replaces == nil
            let single = sealed.size <= configuration.multipartThreshold && sealed.storedPrefix == 0
            // What the server holds at the key now: the version this upload replaces, unless
            // another client changed it since this mount read it (a conflict: both are kept).
            let current: ObjectInfo?
            if expectsNone && single && ifAbsentHonoured == true {
                current = nil
            } else {
                node.lockedFor = "upload: HEAD \(key)"
                do {
                    current = try await storage.head(key)
                } catch StorageError.notFound {
                    current = nil
                } catch {
                    throw FSError.from(error, "upload \(key)")
                }
            }
            if !node.recovered, current?.etag != (node.remote?.etag ?? node.replaces) {
                guard sealed.storedPrefix == 0 else {
                    // The bytes this version extends were that object's: they are gone.
                    throw Self.lostPrefix(key, sealed)
                }
                try await moveAsideForConflict(node, key: key, found: current)
                continue
            }
            if sealed.storedPrefix > 0 && sealed.storedPrefix < storage.capabilities.minimumPartSize {
                // Truncated below what a part may be: the prefix is sent as bytes.
                try await fillStoredPrefix(sealed, of: node)
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
            options.ifAbsent =
                expectsNone && single && current == nil && ifAbsentHonoured != false && refusedWithCondition == nil
            node.lockedFor = "upload: sending \(key)"
            let info: ObjectInfo
            // The options the object was stored with: those its early parts' upload began with.
            var storedOptions = options
            do {
                if !single {
                    let early = await earlyParts(of: sealed, for: key)
                    info = try await multipartUpload(
                        key, staging: sealed, options: options, prefixOf: node.remote, early: early)
                    if let early { storedOptions = early.options }
                } else {
                    await dropEarlyParts(of: sealed)
                    let payload = sealed.payload()
                    let inFlight = Self.streamingFootprint(payload)
                    await budget.reserve(inFlight)
                    defer { budget.release(inFlight) }
                    info = try await storage.put(key, payload: payload, options: options)
                    if options.ifAbsent && ifAbsentHonoured == nil { await probeIfAbsent(key, payload, options) }
                    if let refusal = refusedWithCondition, ifAbsentHonoured == nil {
                        ifAbsentHonoured = false
                        configuration.log(
                            "the server refuses If-None-Match on PUT (\(refusal)): each upload is checked with a HEAD")
                    }
                }
            } catch StorageError.preconditionFailed where options.ifAbsent {
                // Another client stored an object under the key since this mount listed it (the
                // driver told a try of its own, sent again after a lost reply, from that).
                try await moveAsideForConflict(node, key: key, found: try? await storage.head(key))
                continue
            } catch let error as StorageError
                where options.ifAbsent && ifAbsentHonoured != true && error.refusesCondition
            {
                // Perhaps a server that refuses the header itself (the HEAD before each upload
                // finds conflicts there): sent again without it. A refusal of something else
                // (a name too long) fails again, and says nothing of the header.
                refusedWithCondition = error
                continue
            } catch {
                throw FSError.from(error, "upload \(key)")
            }
            node.lockedFor = "upload: waiting for directory renames"
            await waitForDirectoryRenames()
            node.lockedFor = "upload: after sending"
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
                || node.uid != sent.uid || node.gid != sent.gid || storedOptions.metadata != options.metadata
                || storedOptions.contentType != options.contentType
            node.remote = stored(info, with: storedOptions)
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

    /// Finds out, once per mount, whether the server honours `If-None-Match: *` on a PUT: the
    /// small file just stored at `key` is sent again, the same bytes and metadata, with the
    /// condition. A refusal (412) means it does, and later uploads of new files skip their
    /// `HEAD`; a server that stores it again has changed nothing (the same version, stored
    /// twice), and the `HEAD` before each upload stays. Any other failure: asked again next time.
    func probeIfAbsent(_ key: ObjectKey, _ payload: Payload, _ options: PutOptions) async {
        guard payload.length <= Journal.inlineLimit else { return }
        do {
            _ = try await storage.put(key, payload: payload, options: options)
            ifAbsentHonoured = false
            configuration.log(
                "the server ignores If-None-Match on PUT: each upload of a new file is checked with a HEAD first")
        } catch StorageError.preconditionFailed {
            ifAbsentHonoured = true
        } catch {}
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
        let before = (name: node.name, remote: node.remote, replaces: node.replaces)
        dir.children[node.name] = nil
        dir.negative[node.name] = nil
        node.name = name
        dir.children[name] = node.ino
        node.remote = nil
        node.replaces = nil
        // Durable before the upload under the new name: a crash must not store it under NAME.
        do {
            try await recordSealed(node, wait: true)
        } catch {
            // Not recorded (a full cache disk): the file keeps its name, as its journal record
            // does (unless a new file took the name meanwhile), and the next try finds the
            // conflict again.
            if dir.children[before.name] == nil && dir.children[name] == node.ino && node.name == name {
                dir.children[name] = nil
                node.name = before.name
                dir.children[before.name] = node.ino
                node.remote = before.remote
                node.replaces = before.replaces
            }
            throw error
        }
        // The kernel holds NAME for this file's inode (for as long as a pinned file's attributes
        // are trusted): NAME now means the other client's object.
        configuration.invalidateEntry?(dir.ino, before.name)
        configuration.invalidateEntry?(dir.ino, name)
        configuration.log(
            "conflict: \(key) was \(found == nil ? "deleted" : "changed") on the server since this mount read it; "
                + "this mount's version is stored as \(fileKey(node))")
    }

    /// Memory an upload of `payload` holds at once: the HTTP client reads a staged file in
    /// 256 KiB chunks as it sends them (StorageHTTP's FileBody); a few are in flight.
    static func streamingFootprint(_ payload: Payload) -> Int64 { min(payload.length, 1 << 20) }

    /// A multipart upload of `staging`: its stored prefix (if any) as parts the server copies
    /// from `remote` (the version at `key` the prefix belongs to), the rest as parts streamed
    /// from the file.
    /// With `early`, the upload its parts were sent to goes on after them, and the stored
    /// prefix is none.
    func multipartUpload(
        _ key: ObjectKey, staging: StagingFile, options: PutOptions, prefixOf remote: ObjectInfo?,
        early: EarlyParts? = nil
    )
        async throws -> ObjectInfo
    {
        let size = staging.size
        // The parts sent early stand for the file's first bytes, as a stored prefix would.
        let sentEarly = early.map { ($0.parts, $0.covered) }
        let prefix = sentEarly?.1 ?? staging.storedPrefix
        staging.sent = early.map { Int64($0.parts.count) * $0.partSize } ?? 0
        let caps = storage.capabilities
        guard prefix == 0 || remote != nil || early != nil else {
            throw StorageError.invalidArgument("no version to copy from")
        }
        // The prefix in equal parts of at most the largest copy.
        let copied: Int
        if let early {
            copied = early.started
        } else {
            copied = prefix == 0 ? 0 : Int((prefix + caps.maximumCopiedPartSize - 1) / caps.maximumCopiedPartSize)
        }
        let copySize = copied == 0 ? 0 : (prefix + Int64(copied) - 1) / Int64(copied)
        var partSize = early?.partSize ?? max(configuration.partSize, caps.minimumPartSize)
        let maxParts = Int64(caps.maximumPartCount - copied)
        if (size - prefix + partSize - 1) / partSize > maxParts { partSize = (size - prefix + maxParts - 1) / maxParts }
        let upload: MultipartUpload
        if let existing = early?.upload {
            upload = existing
        } else {
            upload = try await storage.createMultipartUpload(key, options: options)
        }
        let storage = self.storage
        do {
            let count = copied + Int((size - prefix + partSize - 1) / partSize)
            let parts = try await withThrowingTaskGroup(of: UploadedPart.self) { group in
                var done: [UploadedPart] = sentEarly?.0 ?? []
                var next = sentEarly == nil ? 0 : copied
                func add() {
                    let number = next + 1
                    if next < copied {
                        let offset = Int64(next) * copySize
                        let range = ByteRange(offset: offset, length: min(copySize, prefix - offset))
                        group.addTask {
                            try await storage.uploadPartCopy(
                                upload, number: number, from: key, range: range, ifMatch: remote?.etag)
                        }
                        next += 1
                        return
                    }
                    let offset = prefix + Int64(next - copied) * partSize
                    let payload = staging.payload(offset: offset, length: min(partSize, size - offset))
                    // A part streams from the staging file: what it holds in memory at once
                    // (chunks being read and sent) is taken from the budget.
                    let budget = self.budget
                    let inFlight = Self.streamingFootprint(payload)
                    group.addTask {
                        await budget.reserve(inFlight)
                        defer { budget.release(inFlight) }
                        return try await self.sendPart(upload, number: number, payload: payload)
                    }
                    next += 1
                }
                /// The bytes part `number` carries (copied ones too: they need not be sent).
                func length(_ number: Int) -> Int64 {
                    if number <= copied { return min(copySize, prefix - Int64(number - 1) * copySize) }
                    return min(partSize, size - prefix - Int64(number - 1 - copied) * partSize)
                }
                let first = next
                while next < min(count, first + configuration.uploadConcurrency) { add() }
                while let part = try await group.next() {
                    done.append(part)
                    staging.sent += length(part.number)
                    if next < count { add() }
                }
                return done.sorted { $0.number < $1.number }
            }
            let info = try await storage.completeMultipartUpload(upload, parts: parts)
            if let early { endEarlyUpload(early) }
            return info
        } catch {
            staging.sent = 0  // the parts are gone with the upload
            try? await storage.abortMultipartUpload(upload)
            if let early { endEarlyUpload(early) }
            throw error
        }
    }
}

extension StorageError {
    /// What a server that does not take `If-None-Match` on a PUT may answer instead of storing
    /// (a 400 or a 501), as opposed to a failure of the connection.
    var refusesCondition: Bool {
        switch self {
        case .invalidArgument, .other, .malformedReply: true
        default: false
        }
    }
}
