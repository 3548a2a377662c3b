import Synchronization

/// Reusable page-aligned buffers for the bytes of WRITE requests, which must be copied out of
/// libfuse's receive buffer before the request goes async. A fresh 1 MiB allocation per
/// request is returned to the OS and faulted in again each time, which halved the write rate
/// in the prototype (FUSE-NOTES.md §3); pooled buffers stay mapped.
final class BufferPool: Sendable {
    private let free = Mutex<[UnsafeMutableRawBufferPointerBox]>([])
    let bufferSize: Int
    let keep: Int

    init(bufferSize: Int, keep: Int = 16) {
        self.bufferSize = bufferSize
        self.keep = keep
    }

    func take(_ size: Int) -> UnsafeMutableRawBufferPointerBox {
        if size <= bufferSize, let b = free.withLock({ $0.popLast() }) { return b }
        return UnsafeMutableRawBufferPointerBox(
            UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, bufferSize), alignment: 4096))
    }

    func give(_ box: UnsafeMutableRawBufferPointerBox) {
        let kept =
            box.buffer.count == bufferSize
            && free.withLock { list in
                guard list.count < keep else { return false }
                list.append(box)
                return true
            }
        if !kept { box.buffer.deallocate() }
    }

    /// Frees the buffers kept for reuse (the mount is idle: they need not stay resident).
    func drain() {
        let kept = free.withLock { list in
            defer { list = [] }
            return list
        }
        kept.forEach { $0.buffer.deallocate() }
    }

    deinit {
        free.withLock { list in list.forEach { $0.buffer.deallocate() } }
    }
}

struct UnsafeMutableRawBufferPointerBox: @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }
}
