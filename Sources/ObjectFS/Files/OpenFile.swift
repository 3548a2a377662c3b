// OpenFile: per-inode open state — handles, dirty marking, and the file's lock that
// serializes loading and uploading of its staging file.

import ObjectStorage

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

    func lock(_ n: Node) async {
        while n.busy { await withCheckedContinuation { n.waiters.append($0) } }
        n.busy = true
    }

    func unlock(_ n: Node) {
        n.busy = false
        if !n.waiters.isEmpty { n.waiters.removeFirst().resume() }
    }
}
