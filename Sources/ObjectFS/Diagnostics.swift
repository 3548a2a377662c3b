// Diagnostics: what the filesystem is doing and waiting for, as text for the log (the daemon
// writes it on SIGUSR1): a mount that seems stuck says which file, lock or limit holds it. And
// `status()`, the figures `objmount status` shows.

/// What a mount holds and still has to do (`objmount status`).
public struct FilesystemStatus: Sendable, Equatable {
    /// Files changed and not stored yet (being written, or closed and waiting for their upload),
    /// their bytes not on the server yet (parts of an upload under way are), and how long ago
    /// the oldest change began.
    public var pendingFiles = 0
    public var pendingBytes: Int64 = 0
    public var oldestPending: Duration?
    public var uploadsRunning = 0
    public var inodes = 0
    public var openHandles = 0
    public var memoryUsed: Int64 = 0
    public var memoryLimit: Int64 = 0
    /// The block cache: bytes held and its bound (on disk, or in memory with `--cache-size 0`).
    public var cacheUsed: Int64 = 0
    public var cacheCapacity: Int64 = 0
    /// Bytes of reads that reached the daemon, answered from the cache or after a fetch (reads
    /// the kernel's page cache answers never reach it).
    public var cacheHitBytes: Int64 = 0
    public var cacheMissBytes: Int64 = 0
}

extension ObjectFS {
    public func status() -> FilesystemStatus {
        var status = FilesystemStatus()
        let now = ContinuousClock.now
        // (A file deleted before its upload is not pending: nothing of it will be sent.)
        for node in nodes.values where node.dirty && node.parent != nil {
            status.pendingFiles += 1
            guard let file = node.sealed ?? node.staging else { continue }
            status.pendingBytes += file.unsent
            let age = now - file.created
            status.oldestPending = max(status.oldestPending ?? .zero, age)
        }
        status.uploadsRunning = uploads.count
        status.inodes = nodes.count
        status.openHandles = handles.count
        status.memoryUsed = budget.used
        status.memoryLimit = budget.limit
        status.cacheUsed = prefetcher.cache.usedBytes
        status.cacheCapacity = prefetcher.cache.capacity
        status.cacheHitBytes = prefetcher.hits
        status.cacheMissBytes = prefetcher.misses
        return status
    }

    public func diagnostics() async -> String {
        var lines: [String] = []
        let dirty = nodes.values.filter(\.dirty)
        lines.append(
            "files: \(nodes.count) inodes, \(handles.count) open handles, \(dirty.count) not stored, "
                + "\(dirty.filter { $0.sealed != nil }.count) sealed")
        lines.append("uploads: \(uploads.count) scheduled or running; " + (await uploadLimiter.state))
        for node in nodes.values where node.busy || !node.waiters.isEmpty {
            lines.append(
                "  locked: \(fileKey(node)) by \(node.lockedFor ?? "nobody") (\(node.waiters.count) waiting)"
                    + (nodes[node.ino] === node && node.parent != nil ? "" : ", detached"))
        }
        for (ino, purposes) in storing.sorted(by: { $0.key < $1.key }).prefix(20) {
            let name = nodes[ino].map { fileKey($0) } ?? "inode \(ino)"
            lines.append("  storing \(name) for " + purposes.joined(separator: ", "))
        }
        for ino in uploads.keys.sorted().prefix(20) {
            guard let node = nodes[ino] else {
                lines.append("  upload of a forgotten inode \(ino)")
                continue
            }
            let state = node.parent == nil ? "unlinked" : node.dirty ? "dirty" : "stored"
            let sealed = node.sealed.map { "sealed \($0.size) bytes" } ?? "not sealed"
            lines.append("  upload: \(fileKey(node)): \(state), \(sealed), \(node.writers) writers")
        }
        lines.append(
            "memory budget: \(budget.used) of \(budget.limit) bytes in use, \(budget.waiting) waiting")
        lines.append(
            "journal: \(journalRecords) records, \(syncedJournalRecords) synced"
                + (journalSyncScheduled ? ", a sync scheduled" : "")
                + (journal.map { ", \($0.pending.count) pending" } ?? ""))
        lines.append("directory renames: \(directoryRenames), \(renameWaiters.count) uploads waiting for them")
        return lines.joined(separator: "\n")
    }
}

extension AsyncLimiter {
    /// "N of M free, K waiting".
    var state: String { "\(available) free, \(waiters.count) waiting" }
}
