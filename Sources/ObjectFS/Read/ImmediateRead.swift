// Immediate reads: a read whose bytes are in an open block file's pages is answered on the
// caller's thread (libfuse's worker), without a Task, an actor hop or an I/O thread. On this
// kind of machine a FUSE request costs 25–40 µs of context switches; waking a second thread to
// answer it costs as much again, and random 4 KiB reads are nearly all such requests.
//
// The actor stays the only writer of file state. It publishes, per node, the stored version
// the node's reads come from (`ReadSource`), and clears it whenever the node's bytes or name
// may change (staging, a new server version, a size, a rename). A handle's ReadWindow sits
// behind a lock (`HandleReads`) so that reads served either way drive the same window: a
// sequential run keeps its read-ahead whichever path its reads take.

import ObjectStorage
import Synchronization

/// The stored version a node's reads come from, while nothing local changes it.
final class ReadSource: Sendable {
    struct Current: Sendable {
        let version: ObjectVersion
        let object: CachedObject
    }
    private let current = Mutex<Current?>(nil)

    /// The version to read, for the immediate path; `nil`: ask the actor.
    var value: Current? { current.withLock { $0 } }

    /// The cache's name for `version`, published for immediate reads (computed once per
    /// version: it hashes the key).
    func publish(_ version: ObjectVersion) -> CachedObject {
        current.withLock { c in
            if let c, c.version.size == version.size, c.version.etag == version.etag, c.version.key == version.key {
                return c.object
            }
            let object = CachedObject(version)
            c = Current(version: version, object: object)
            return object
        }
    }

    /// The node's bytes or key may change: reads go through the actor until it publishes again.
    func clear() { current.withLock { $0 = nil } }
}

/// One open handle's reading state, shared by the actor and the immediate path.
final class HandleReads: Sendable {
    let source: ReadSource
    let window: Mutex<ReadWindow>

    init(source: ReadSource, blockSize: Int64) {
        self.source = source
        self.window = Mutex(ReadWindow(blockSize: blockSize))
    }

    /// Feeds a read to the window (whose cap follows the memory budget now).
    func actions(offset: Int64, length: Int, size: Int64, maximumWindow: Int64) -> [ReadWindow.Action] {
        window.withLock { w in
            w.maximumWindow = maximumWindow
            return w.read(offset: offset, length: Int64(length), size: size)
        }
    }
}

extension ObjectFS {
    /// Answers a read of handle `fh` at once when every byte of it is in the block cache and
    /// in memory: fills `buffer` (as many bytes as the read asks for) and returns the count
    /// (short at the end of the file). `nil`: the read must go through `read(_:offset:count:)`
    /// — the handle is being written, its version is not known here, or a block is missing,
    /// not open, or on disk only. Never blocks on I/O or on the actor.
    public nonisolated func readImmediately(_ fh: UInt64, offset: Int64, into buffer: UnsafeMutableRawBufferPointer)
        -> Int?
    {
        guard let reads = readHandles.withLock({ $0[fh] }), let source = reads.source.value else { return nil }
        guard
            let n = prefetcher.readImmediately(
                source.object, size: source.version.size, offset: offset, into: buffer)
        else { return nil }
        let actions = reads.actions(
            offset: offset, length: buffer.count, size: source.version.size, maximumWindow: prefetcher.windowLimit)
        prefetcher.perform(actions, source.object, source.version)
        return n
    }
}
