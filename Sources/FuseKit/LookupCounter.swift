import Synchronization

/// libfuse's lookup-count rule (fuse_lowlevel.h): every successful reply_entry / reply_create /
/// readdirplus entry other than "." and ".." adds one to the inode's count, every forget
/// subtracts `nlookup`, and the filesystem may drop the inode only at zero. Counts are added
/// *before* the reply is sent (a FORGET can race the reply) and taken back if the reply fails.
public final class LookupCounter: Sendable {
    private let counts = Mutex<[Inode: UInt64]>([:])

    public init() {}

    public func add(_ ino: Inode, _ n: UInt64 = 1) {
        counts.withLock { $0[ino, default: 0] += n }
    }

    /// Subtracts `n`; returns true when the count reached zero (the inode may be freed).
    @discardableResult
    public func forget(_ ino: Inode, _ n: UInt64) -> Bool {
        counts.withLock { c in
            let left = (c[ino] ?? 0) > n ? c[ino]! - n : 0
            if left == 0 {
                c[ino] = nil
                return true
            }
            c[ino] = left
            return false
        }
    }

    public func count(_ ino: Inode) -> UInt64 { counts.withLock { $0[ino] ?? 0 } }

    public var trackedInodes: Int { counts.withLock { $0.count } }
}
