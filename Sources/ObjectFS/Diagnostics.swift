// Diagnostics: what the filesystem is doing and waiting for, as text for the log (the daemon
// writes it on SIGUSR1): a mount that seems stuck says which file, lock or limit holds it.

extension ObjectFS {
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
