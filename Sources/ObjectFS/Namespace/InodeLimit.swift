// InodeLimit: the inode table holds at most `configuration.inodeLimit` nodes, whatever the
// size of the tree walked. A `find` over a million objects, or `ls -f` of a directory of a
// million, would otherwise keep a node per object for as long as the kernel keeps its inodes
// (until memory pressure, which a machine with memory to spare never reaches).
//
// The nodes wait in a queue in the order they were made; past the limit, the oldest are looked
// at (a clock: one used since it was last looked at gets a second chance). An idle node the
// kernel does not hold is dropped at once; for one it holds, the kernel is asked to forget the
// name (`invalidateEntry`), and the node goes with the kernel's FORGET (`ObjectFS.forget`). A
// node this mount needs (open, not stored, changed within the TTL...) is never dropped. Its
// directory then no longer knows all its names: the next lookup there asks the server (the
// HEAD only for a name it listed as an object), and a listing asked before the drop does not
// count as complete.

import ObjectStorage

extension ObjectFS {
    /// Inode numbers in the order the limit looks at them, each at most once (a number whose
    /// node went meanwhile is skipped when its turn comes).
    struct InodeQueue {
        private var items: [InodeNumber] = []
        private var head = 0

        var count: Int { items.count - head }

        mutating func append(_ ino: InodeNumber) { items.append(ino) }

        mutating func popFirst() -> InodeNumber? {
            guard head < items.count else { return nil }
            let ino = items[head]
            head += 1
            if head >= 4096 && head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            return ino
        }

        mutating func removeAll(where gone: (InodeNumber) -> Bool) {
            items = items[head...].filter { !gone($0) }
            head = 0
        }
    }

    /// After a node was added: past the limit, the oldest idle nodes go, down to 1/32 below
    /// it (a batch, not one per new node). One turn of the queue at most, so that a node made
    /// or used since the last turn (one an operation may still be returning to the kernel) is
    /// never dropped by this one. A turn that only took second chances back goes on at the
    /// next node added; one that found nothing to drop (all in use) waits until 1/32 more came.
    /// Returns whether the table is still above that and a later turn may drop more.
    @discardableResult
    func enforceInodeLimit() -> Bool {
        if inodeQueue.count > 2 * nodes.count + 1024 { inodeQueue.removeAll { nodes[$0] == nil } }
        let limit = configuration.inodeLimit
        guard limit > 0, nodes.count - evicting.count > limit, nodes.count >= inodeLimitRetryAt else { return false }
        let target = limit - limit / 32
        let t = now
        var left = inodeQueue.count
        var spared = 0
        var idle: [InodeNumber: Bool] = [:]
        while nodes.count - evicting.count > target, left > 0, let ino = inodeQueue.popFirst() {
            left -= 1
            guard let n = nodes[ino] else {
                evicting.remove(ino)
                continue
            }
            if evicting.contains(ino), let p = n.parent, evicting.contains(p) {
                // Its whole directory is being forgotten: that directory's turn asks again.
                inodeQueue.append(ino)
                continue
            }
            evicting.remove(ino)
            guard !n.referenced, let dir = n.parent.flatMap({ nodes[$0] }), isEvictable(n, at: t) else {
                if n.referenced { spared += 1 }
                n.referenced = false
                inodeQueue.append(ino)
                continue
            }
            if configuration.kernelHolds?(ino) == true {
                inodeQueue.append(ino)
                if let up = dir.parent.flatMap({ nodes[$0] }), isIdleLeaf(dir, at: t, checked: &idle) {
                    // The kernel forgets the whole directory at once: one request, not one per
                    // file (a `find` leaves thousands of such directories behind it).
                    evicting.insert(dir.ino)
                    for c in dir.children.values { evicting.insert(c) }
                    configuration.invalidateEntry?(up.ino, dir.name)
                    continue
                }
                // Asked again at its next turn if no forget came (the kernel may be using it).
                evicting.insert(ino)
                configuration.invalidateEntry?(dir.ino, n.name)
            } else {
                if n.kind.isObject { noteDroppedObject(n.name, in: dir) }
                dropChild(n, from: dir)
            }
        }
        let above = nodes.count - evicting.count > target
        inodeLimitRetryAt = above && spared == 0 ? nodes.count + max(1, limit / 32) : 0
        return above && spared > 0
    }

    /// Brings the table under the limit, also when the last try found everything in use (what
    /// was changed within the TTL may be idle by now): for the daemon, once a burst of requests
    /// is over. While a turn only takes second chances back, another follows a moment later.
    public func trimInodeTable() {
        inodeLimitRetryAt = 0
        guard enforceInodeLimit(), !inodeTrimScheduled else { return }
        inodeTrimScheduled = true
        Task {
            try? await Task.sleep(for: .milliseconds(250))
            self.trimAgain()
        }
    }

    private func trimAgain() {
        inodeTrimScheduled = false
        trimInodeTable()
    }

    /// Keeps the name of an object dropped before the kernel held it: `find` and `ls -l` of a
    /// directory larger than the limit look each name up after the whole listing, and that
    /// lookup then asks the object's HEAD only. A name costs ~50 bytes, not a node's ~400; past
    /// twice as many names as the limit allows nodes, those of other directories are forgotten
    /// (their lookups then ask as for any name), and this one's too if that is not enough.
    private func noteDroppedObject(_ name: String, in dir: Node) {
        if droppedObjectNames >= 2 * configuration.inodeLimit {
            for d in nodes.values where d !== dir && d.kind == .directory && !d.droppedObjects.isEmpty {
                d.droppedObjects = Names()
            }
            droppedObjectNames = dir.droppedObjects.count
            if droppedObjectNames >= 2 * configuration.inodeLimit {
                dir.droppedObjects = Names()
                droppedObjectNames = 0
            }
        }
        if dir.droppedObjects[name] == nil { droppedObjectNames += 1 }
        dir.droppedObjects[name] = ()
    }

    /// Whether `dir` may go with everything in it: files only, a few (at most 1/16 of the
    /// limit: a larger directory goes file by file, the least recently used first), none used
    /// since the clock last passed it, none needed by this mount, and no open handle on it.
    private func isIdleLeaf(_ dir: Node, at t: Int64, checked: inout [InodeNumber: Bool]) -> Bool {
        if let known = checked[dir.ino] { return known }
        let children = dir.children
        var idle = dir.ino != rootInode && children.count <= max(1, configuration.inodeLimit / 16)
        idle = idle && !directoryHandles.values.contains { $0.dir == dir.ino }
        if idle {
            for ino in children.values {
                guard let c = nodes[ino] else { continue }
                if !c.kind.isObject || c.referenced || metadataFetches[ino] != nil || !isForgettable(c, at: t) {
                    idle = false
                    break
                }
            }
        }
        checked[dir.ino] = idle
        return idle
    }

    private func isEvictable(_ n: Node, at t: Int64) -> Bool {
        guard isForgettable(n, at: t), metadataFetches[n.ino] == nil else { return false }
        return n.kind != .directory || !directoryHandles.values.contains { $0.dir == n.ino }
    }

    /// Whether this mount still needs `n` (or a node under it): open, not stored, locked,
    /// waited for, being stored, or changed by this mount within the TTL.
    func isForgettable(_ n: Node, at t: Int64) -> Bool {
        if n.isPinned || n.busy || !n.waiters.isEmpty || n.writers > 0 || n.sealed != nil || n.staging != nil
            || uploads[n.ino] != nil || (n.changedAt != .min && n.changedAt >= t - ttl)
        {
            return false
        }
        return n.children.values.allSatisfy { nodes[$0].map { isForgettable($0, at: t) } ?? true }
    }

    /// Drops `n` (and what is under it) from the table and from `dir`, which then no longer
    /// knows all its names.
    func dropChild(_ n: Node, from dir: Node) {
        if dir.children[n.name] == n.ino { dir.children[n.name] = nil }
        dir.listedUntil = .min
        lastListingAsked = max(now, lastListingAsked + 1)
        dir.childDroppedAt = lastListingAsked
        drop(n)
    }

    private func drop(_ n: Node) {
        for ino in n.children.values { if let c = nodes[ino] { drop(c) } }
        nodes[n.ino] = nil
        evicting.remove(n.ino)
    }
}
