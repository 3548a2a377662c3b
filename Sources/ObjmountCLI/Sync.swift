import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

final class ResultBox<T: Sendable>: Sendable {
    private let value = Mutex<Result<T, any Error>?>(nil)
    func set(_ r: Result<T, any Error>) { value.withLock { $0 = r } }
    func get() throws -> T { try value.withLock { $0! }.get() }
}

/// A one-shot POSIX semaphore: the main thread waits while a Task works.
final class DispatchSemaphoreLite: @unchecked Sendable {
    private var sem = sem_t()
    init() { sem_init(&sem, 0, 0) }
    deinit { sem_destroy(&sem) }
    func signal() { sem_post(&sem) }
    func wait() { while sem_wait(&sem) != 0 && errno == EINTR {} }
}
