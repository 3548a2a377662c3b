// WriteBack: what `close` promises and how the promise is kept.
//
// - `seal` makes a file's staging file the version to store: never written again (the next
//   write goes to a copy, `stagingFile(for:)`), fsync'd (or, if small, its bytes carried by the
//   record) and named in a journal `put` record with the file's key and metadata. A metadata change or a rename of a sealed file records a new
//   `put`; storing it or deleting the file records `done` (Write/Journal.swift).
// - With write-back on, `close` seals and returns; an upload task per file stores the sealed
//   version in the background, after a short delay (so that rsync's close → utimes → chmod →
//   rename becomes one PUT under the final name), at most `writeBackConcurrency` at a time,
//   retrying with backoff. `fsync` and unmount store at once and wait.
// - At mount, `recoverPending` adopts the journals of mounts that are gone: their sealed files
//   are shown in the namespace (pinned, as any file not stored yet) and stored like the others.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// Makes the file's current bytes the version to store and records it in the journal.
    func seal(_ node: Node) async throws(FSError) {
        guard node.dirty, node.parent != nil, let staging = node.staging else { return }
        // Already sealed: only its key or metadata may have changed since it was recorded.
        guard node.sealed !== staging else { return try await recordSealed(node, wait: false) }
        let superseded = node.sealed
        // From here on writes go to a copy; the bytes this close acknowledges stay as they are.
        node.sealed = staging
        node.sealedGeneration = node.generation
        do {
            try await recordSealed(node, wait: true)
        } catch {
            if node.sealed === staging { node.sealed = superseded }
            throw error
        }
        if let old = superseded, old !== node.sealed { forgetVersion(old) }
    }

    /// Records the sealed version under the file's current key and metadata (again, after a
    /// rename or a metadata change). With `wait` (a close or fsync acknowledges the version),
    /// returns once the record is durable; otherwise the record is synced within 50 ms, by the
    /// next close, or before the file's upload starts — as a local filesystem makes a rename or
    /// a chmod durable at its next journal commit, not at once.
    func recordSealed(_ node: Node, wait: Bool) async throws(FSError) {
        guard let journal, let sealed = node.sealed, node.parent != nil else { return }
        // A file with a stored prefix has a hole where the prefix is: it is synced, never carried.
        if !sealed.durable && (sealed.size > Journal.inlineLimit || sealed.storedPrefix > 0) {
            try await sealed.syncOffPool()
            sealed.durable = true
            // A later seal records its own version.
            guard node.sealed === sealed, node.parent != nil else { return }
        }
        // The key and metadata as they are now, after any wait.
        let options = putOptions(node)
        var entry = Journal.Entry(
            file: sealed.name, key: fileKey(node), size: sealed.size, contentType: options.contentType,
            metadata: options.metadata)
        if sealed.storedPrefix > 0 {
            guard let remote = node.remote, let etag = remote.etag else { throw Self.lostPrefix(fileKey(node), sealed) }
            entry.storedPrefix = Journal.StoredPrefix(
                length: sealed.storedPrefix, etag: etag.value, objectSize: remote.size)
        }
        let previous = journal.pending[sealed.name]
        if previous == entry { return }
        if !sealed.durable {
            // Pages written moments ago: a read from the page cache, no disk wait.
            entry.data = try sealed.read(at: 0, count: Int(sealed.size))
        }
        try journal.append(.put(entry), inMemory: !sealed.onDisk)
        sealed.journaled = true
        // A rename's record names the key it leaves too: until it is durable, a crash would
        // have the next mount store this version there again. (Every store there is preceded
        // by a close or by a record naming that key, both of which sync everything; this keeps
        // "every record naming the key" true without that argument.)
        countJournalRecord(naming: [entry.key, previous?.key].compactMap { $0 })
        if wait {
            try await syncJournalRecords()
        } else {
            scheduleJournalSync()
        }
    }

    /// Makes the journal's records so far durable (fdatasync on the I/O pool).
    func syncJournal(_ journal: Journal) async throws(FSError) {
        let fd = journal.descriptor
        journalSyncs += 1
        let error = await BlockingIOPool.shared.run { () -> Int32 in fdatasync(fd) == 0 ? 0 : errno }
        if error != 0 { throw FSError(error, "cannot sync the journal in \(journal.directory)") }
    }

    /// The sealed version `file` is stored, superseded or deleted: its journal record is done
    /// and the file may go.
    func forgetVersion(_ file: StagingFile) {
        guard file.journaled, let journal else { return }
        let key = journal.pending[file.name]?.key
        do {
            try journal.append(.done(file: file.name))
            file.journaled = false
            countJournalRecord(naming: key.map { [$0] } ?? [])
            scheduleJournalSync()
        } catch {
            // The record stays pending: a later mount may store this version again.
            configuration.log("\(error.message): a later mount may store \(file.name) again")
        }
    }

    /// Records nobody waits for (`done`, a rename or a metadata change of a sealed file) are
    /// synced in the background, a batch at a time, within 50 ms. A `done` must not stay
    /// unsynced long: a record that carries a small file's bytes would have a later mount, after
    /// a power cut, store those bytes again over what became of the object since.
    private func scheduleJournalSync() {
        guard !journalSyncScheduled else { return }
        journalSyncScheduled = true
        Task {
            try? await Task.sleep(for: .milliseconds(50))
            await syncJournalRecordsOrLog()
            journalSyncScheduled = false
            if syncedJournalRecords < journalRecords { scheduleJournalSync() }
        }
    }

    /// Counts a record just appended to the journal; `keys`: the objects it names.
    func countJournalRecord(naming keys: [ObjectKey] = []) {
        journalRecords += 1
        for key in keys { unsyncedRecordOf[key] = journalRecords }
    }

    /// Makes every journal record so far durable.
    func syncJournalRecords() async throws(FSError) {
        guard let journal, syncedJournalRecords < journalRecords else { return }
        let covered = journalRecords
        try await syncJournal(journal)
        syncedJournalRecords = max(syncedJournalRecords, covered)
        let synced = syncedJournalRecords
        unsyncedRecordOf = unsyncedRecordOf.filter { $0.value > synced }
    }

    /// Whether a record naming `key` is not synced yet. Before a version is stored under a key,
    /// every record that names the key must be durable — the file's own `put` (a rename or a
    /// metadata change is synced lazily), and the `done` of a version stored there before (else
    /// a crash would have the next mount store that older version again over this one) — but
    /// not the `done`s of other keys' uploads: waiting for those made each small file's upload
    /// cost a second fdatasync.
    func unsyncedRecords(naming key: ObjectKey) -> Bool {
        guard let record = unsyncedRecordOf[key] else { return false }
        return record > syncedJournalRecords
    }

    /// `syncJournalRecords` before this mount deletes, moves or stores an object: a record
    /// that names an older state of it must never come back after a crash.
    /// Returns whether the records are durable now.
    @discardableResult
    func syncJournalRecordsOrLog() async -> Bool {
        do {
            try await syncJournalRecords()
            return true
        } catch {
            configuration.log(error.message)
            return false
        }
    }

    /// Records every sealed file under `dir` again (its key changed with a directory rename).
    func recordSealed(under dir: Node) async {
        for ino in dir.children.values {
            guard let n = nodes[ino] else { continue }
            if n.kind == .directory {
                await recordSealed(under: n)
            } else if n.sealed != nil {
                do { try await recordSealed(n, wait: false) } catch { configuration.log(error.message) }
            }
        }
    }

    /// What `close` does with a file that has unstored changes: with write-back, seal it and
    /// store it in the background; without, store it now.
    func commit(_ node: Node) async throws(FSError) {
        try await seal(node)
        if configuration.writeBack {
            scheduleUpload(node, after: configuration.writeBackDelay)
        } else {
            try await upload(node)
        }
        if let error = node.uploadError {
            node.uploadError = nil
            throw error
        }
    }

    /// Starts the background upload of `node`'s sealed version, unless one is queued.
    func scheduleUpload(_ node: Node, after delay: Duration) {
        guard uploads[node.ino] == nil else { return }
        let ino = node.ino
        uploads[ino] = Task { await self.storeInBackground(ino, after: delay) }
    }

    private func storeInBackground(_ ino: InodeNumber, after delay: Duration) async {
        if delay > .zero { try? await Task.sleep(for: delay) }
        var backoff: Duration = .seconds(1)
        while let node = nodes[ino], node.dirty, node.parent != nil, node.sealed != nil || node.writers == 0 {
            await uploadLimiter.acquire()
            let failure = await store(ino, for: "the background upload")
            await uploadLimiter.release()
            guard let failure else {
                node.uploadError = nil
                break
            }
            node.uploadError = failure
            configuration.log("cannot store \(fileKey(node)) yet: \(failure.message)")
            // What retrying cannot fix waits for the next close, fsync or unmount.
            if Self.permanentErrors.contains(failure.errno) || Task.isCancelled { break }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(60))
        }
        uploads[ino] = nil
    }

    func endDirectoryRename() {
        directoryRenames -= 1
        if directoryRenames == 0 {
            for waiter in renameWaiters { waiter.resume() }
            renameWaiters = []
        }
    }

    /// Returns once no directory rename is copying keys: an object stored meanwhile might sit
    /// under the old name of a directory whose copy missed it.
    func waitForDirectoryRenames() async {
        while directoryRenames > 0 {
            // Looked at again where it queues (see `lock`).
            await withCheckedContinuation { c in
                if directoryRenames > 0 { renameWaiters.append(c) } else { c.resume() }
            }
        }
    }

    static let permanentErrors: Set<Int32> = [EACCES, EPERM, ENAMETOOLONG, EFBIG, EROFS, EINVAL, EDQUOT, ENOSPC]

    /// Stores every sealed version now (fsync of a directory, unmount): all of them, or those
    /// under `dir`, `writeBackConcurrency` at a time. Returns the failures.
    func storeSealed(under dir: Node? = nil) async -> [FSError] {
        var targets: [InodeNumber] = []
        for node in nodes.values where node.dirty && node.parent != nil && (node.sealed != nil || node.writers == 0) {
            if let dir, !isInside(node, dir) { continue }
            targets.append(node.ino)
        }
        // A full cache disk can refuse a file's journal record until uploads finishing beside
        // it free their staging files: those go again while another round stores something.
        var others: [FSError] = []
        while true {
            var failures: [(InodeNumber, FSError)] = []
            await withTaskGroup(of: (InodeNumber, FSError?).self) { group in
                for ino in targets {
                    group.addTask {
                        await self.uploadLimiter.acquire()
                        let failure = await self.store(ino, for: "a flush of everything")
                        await self.uploadLimiter.release()
                        return (ino, failure)
                    }
                }
                for await (ino, failure) in group { if let failure { failures.append((ino, failure)) } }
            }
            let noSpace = failures.filter { $0.1.errno == ENOSPC }
            if noSpace.isEmpty || failures.count == targets.count { return others + failures.map(\.1) }
            others += failures.filter { $0.1.errno != ENOSPC }.map(\.1)
            targets = noSpace.map(\.0)
        }
    }

    /// Stores the file's acknowledged bytes: its sealed version, and when no program has it open
    /// for writing, everything written (sealed now; again if writes came in meanwhile).
    private func store(_ ino: InodeNumber, for purpose: String) async -> FSError? {
        guard let node = nodes[ino] else { return nil }
        storing[ino, default: []].append(purpose)
        defer { storing[ino]!.removeFirst(); if storing[ino]!.isEmpty { storing[ino] = nil } }
        do {
            for _ in 0..<3 {
                if node.writers == 0 { try await seal(node) }
                try await upload(node)
                if !node.dirty || node.writers > 0 || node.parent == nil { break }
            }
        } catch {
            return error
        }
        return nil
    }

    func isInside(_ node: Node, _ dir: Node) -> Bool {
        var cur = node.parent
        while let p = cur {
            if p == dir.ino { return true }
            cur = nodes[p]?.parent
        }
        return false
    }

    /// `fsync` of a directory: waits until every file under it that was closed or fsync'd is
    /// stored; the first failure is the error.
    public func fsyncDirectory(_ ino: InodeNumber) async throws(FSError) {
        let dir = try directory(ino)
        if let failure = await storeSealed(under: dir).first { throw failure }
    }

    // MARK: - Recovery

    /// A recovered file is stored: the parts or segments that its upload cut by the crash left
    /// on the server (started before this mount) go.
    func abortStaleUploads(of key: ObjectKey) async {
        guard let listing = storage as? any IncompleteUploadListing,
            let found = try? await listing.incompleteUploads(prefix: key)
        else { return }
        for stale in found where stale.upload.key == key && stale.initiated < startedAt {
            do {
                try await listing.abortMultipartUpload(stale.upload)
            } catch {
                configuration.log("cannot remove what an interrupted upload of \(key) left: \(error)")
            }
        }
    }

    /// What `recoverPending` found.
    public struct Recovery: Sendable {
        /// Keys of the files adopted from mounts that are gone, to be stored.
        public var keys: [String] = []
        public var bytes: Int64 = 0
        /// Records whose staging file is missing or shorter than recorded (deleted by hand, or
        /// a disk that lost it): nothing can be stored for them.
        public var lost: [String] = []
    }

    /// Adopts what mounts of the same remote that are gone left pending in the journal
    /// directory: each file is shown in the namespace and queued for upload. Call once, before
    /// the filesystem serves requests.
    public func recoverPending() -> Recovery {
        var recovery = Recovery()
        guard let journal else { return recovery }
        var unfinished: [MultipartUpload] = []
        defer {
            // Begun by a killed mount for files it was writing: aborted in the background
            // (this journal names them until then).
            if !unfinished.isEmpty {
                Task { for upload in unfinished { await self.abortEarlyUpload(upload) } }
            }
        }
        for orphan in journal.orphans() {
            var kept: Set<String> = []
            for upload in orphan.uploads {
                do {
                    try journal.append(.began(upload))
                    unfinished.append(upload)
                } catch {
                    configuration.log("\(error.message): the journal \(orphan.journal) is kept")
                    return recovery
                }
            }
            for var entry in orphan.entries {
                guard entry.key.hasPrefix(prefix), entry.key.utf8.count > prefix.utf8.count,
                    let file = recoveredFile(entry), file.size == entry.size
                else {
                    recovery.lost.append(entry.key)
                    continue
                }
                // A file the disk had no room for stays in memory, and its bytes in the record.
                if file.onDisk { entry.data = nil }
                do {
                    // This mount's journal names it now, before the old journal goes.
                    try journal.append(.put(entry), inMemory: !file.onDisk)
                } catch {
                    configuration.log("\(error.message): \(entry.key) stays with the journal \(orphan.journal)")
                    return recovery
                }
                if file.onDisk { kept.insert(entry.file) }
                place(file, as: entry)
                recovery.keys.append(entry.key)
                recovery.bytes += entry.size
            }
            // The adopted records (and files made again from records) are durable before the
            // old journal goes.
            syncDirectory(staging.path)
            guard fdatasync(journal.descriptor) == 0 else {
                configuration.log("cannot sync the journal: \(orphan.journal) is kept")
                return recovery
            }
            journal.release(orphan, keeping: kept)
        }
        journal.removeLeftovers()
        return recovery
    }

    /// The staging file of a recovered record: as the crashed mount left it, or made again from
    /// the bytes the record carries (a small file the crash may have cut, since it was not
    /// synced) — in memory if the disk has no room for it: the record is its only copy, and it
    /// stays the only copy, in this mount's journal.
    private func recoveredFile(_ entry: Journal.Entry) -> StagingFile? {
        guard let data = entry.data else { return try? StagingFile(directory: staging, existing: entry.file) }
        do {
            return try StagingFile(directory: staging, restoring: entry.file, bytes: data)
        } catch {
            configuration.log("\(error.message): \(entry.key) is kept in memory and in the journal")
            return StagingFile(directory: staging, keeping: entry.file, bytes: data)
        }
    }

    /// Puts a recovered sealed file into the namespace at its key (making the directories on
    /// its path, which listings then confirm or keep as pinned) and queues its upload.
    private func place(_ file: StagingFile, as entry: Journal.Entry) {
        let parts = String(entry.key.utf8.dropFirst(prefix.utf8.count))!.split(
            separator: "/", omittingEmptySubsequences: false
        ).map(String.init)
        var dir = nodes[rootInode]!
        for name in parts.dropLast() {
            if let ino = dir.children[name], let n = nodes[ino], n.kind == .directory {
                dir = n
            } else {
                if let ino = dir.children[name], let n = nodes[ino] { detach(n, from: dir) }
                dir = addChild(to: dir, name: name, kind: .directory)
            }
        }
        let name = parts.last!
        if let ino = dir.children[name], let old = nodes[ino] {
            // Two records for one key: the later one wins, as it would have on the server.
            if let sealed = old.sealed { forgetVersion(sealed) }
            detach(old, from: dir)
        }
        let node = addChild(to: dir, name: name, kind: .file)
        let meta = entry.metadata
        node.mode = meta["mode"].flatMap { UInt32($0) }.map { $0 & 0o7777 } ?? node.mode
        node.mtime = meta["mtime"].flatMap(Timestamp.init(metadataValue:)) ?? node.mtime
        node.uid = meta["uid"].flatMap { UInt32($0) }
        node.gid = meta["gid"].flatMap { UInt32($0) }
        node.userMetadata = meta
        node.size = file.size
        if let prefix = entry.storedPrefix {
            // Its first bytes are still the stored version's, which its upload copies.
            file.storedPrefix = prefix.length
            node.remote = ObjectInfo(
                key: entry.key, size: prefix.objectSize, etag: ETag(prefix.etag), lastModified: node.mtime,
                contentType: entry.contentType, metadata: entry.metadata)
        }
        node.staging = file
        node.sealed = file
        node.recovered = true
        markDirty(node)
        node.sealedGeneration = node.generation
        scheduleUpload(node, after: .zero)
    }
}
