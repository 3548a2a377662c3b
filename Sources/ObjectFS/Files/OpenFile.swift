// OpenFile: per-inode open state — handles, dirty marking, and the file's lock that
// serializes loading and uploading of its staging file.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    struct Handle {
        let ino: InodeNumber
        let flags: OpenFlags
        /// How this handle reads: sequential runs, jumps (Read/ReadWindow.swift), shared with
        /// reads answered outside the actor (Read/ImmediateRead.swift).
        let reads: HandleReads
    }

    func newHandleNumber() -> UInt64 {
        let fh = nextHandle
        nextHandle += 1
        return fh
    }

    func openHandle(_ node: Node, flags: OpenFlags) -> UInt64 {
        let fh = newHandleNumber()
        let reads = HandleReads(source: node.readSource, blockSize: prefetcher.blockSize)
        handles[fh] = Handle(ino: node.ino, flags: flags, reads: reads)
        readHandles.withLock { $0[fh] = reads }
        node.openHandles += 1
        if flags.write { node.writers += 1 }
        return fh
    }

    func markDirty(_ node: Node) {
        node.pageCacheETag = nil
        node.dirty = true
        node.generation &+= 1
    }

    /// Takes the file's lock; a cancelled task (an interrupted fsync) stops waiting with EINTR.
    ///
    /// A waiter looks at the lock again where it queues itself: the call into the cancellation
    /// handler may leave the actor and come back (a request's task prefers the executor of its
    /// FUSE thread, FuseKit/RequestExecutor.swift), and an unlock that ran in between, with no
    /// one queued yet, woke nobody: the waiter slept for good on a free lock (the crash test
    /// found it once in a few hundred remounts).
    func lock(_ n: Node, for purpose: String) async throws(FSError) {
        while n.busy {
            lockTickets += 1
            let ticket = lockTickets
            lockWaits[ticket] = n
            await withTaskCancellationHandler {
                await withCheckedContinuation { c in
                    if n.busy { n.waiters.append((ticket, c)) } else { c.resume() }
                }
            } onCancel: {
                Task { await self.stopWaiting(ticket) }
            }
            lockWaits[ticket] = nil
            if Task.isCancelled {
                // An unlock may have handed the lock to this waiter just before: it passes on.
                if !n.busy { wakeNextWaiter(n) }
                throw FSError(EINTR, "interrupted")
            }
        }
        n.busy = true
        n.lockedFor = purpose
    }

    /// The cancelled waiter `ticket` leaves the queue of the node it waits for (looked up by
    /// ticket: the node may be gone from the namespace meanwhile).
    private func stopWaiting(_ ticket: UInt64) {
        guard let n = lockWaits[ticket], let i = n.waiters.firstIndex(where: { $0.ticket == ticket }) else { return }
        n.waiters.remove(at: i).continuation.resume()
    }

    func unlock(_ n: Node) {
        n.busy = false
        n.lockedFor = nil
        wakeNextWaiter(n)
    }

    private func wakeNextWaiter(_ n: Node) {
        if !n.waiters.isEmpty { n.waiters.removeFirst().continuation.resume() }
    }
}
