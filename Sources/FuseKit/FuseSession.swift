// FuseSession: one mounted FUSE filesystem.
//
// libfuse's worker threads call the C callbacks below. Each callback copies what it needs out
// of libfuse's buffers (names, write bytes, fuse_file_info) and hands the request to a Swift
// Task through `respond`, which awaits the filesystem and sends exactly one reply, so the
// session loop never blocks on I/O. Lookup counts are kept here (LookupCounter); the
// filesystem hears `forget` only when an inode's count reaches zero. No lock is held across
// a fuse_reply_* call (FUSE-NOTES.md: it doubled the CPU cost per request).

import CFuse
import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A libfuse request handle; owned by exactly one Task until it is replied to.
struct Request: @unchecked Sendable {
    let raw: fuse_req_t
}

/// A copy of a `fuse_file_info` taken during the callback (the original is valid only then).
struct FileInfoCopy: @unchecked Sendable {
    var info: fuse_file_info
}

public final class FuseSession: @unchecked Sendable {
    /// The version of the libfuse objmount runs with (`fuse_pkgversion`).
    public static var libraryVersion: String { String(validatingCString: fuse_pkgversion()) ?? "?" }

    public let filesystem: any FuseFilesystem
    public let options: FuseMountOptions
    let lookups = LookupCounter()
    /// Inodes forgotten and not yet told to the filesystem, and whether a task is telling them.
    private let forgotten = Mutex<(inodes: [Inode], draining: Bool)>(([], false))
    /// The last getattr/lookup answers, for GETATTRs answered on the receiving thread.
    let attributes = AttributeCache()
    let pool: BufferPool
    /// `filesystem.extendedAttributeNamespaces`, read once.
    let xattrNamespaces: [String]
    private let inFlight = Atomic<Int>(0)
    private let received = Atomic<Int>(0)
    private var session: OpaquePointer?
    /// The session's address while notifications may be sent to the kernel (0 before the mount
    /// and once the loop has ended).
    private let notifiable = Mutex<UInt>(0)
    /// Notifications go out one at a time, off the request threads: the kernel may hold one
    /// until a request on the same directory is answered.
    private let notifications = DispatchQueue(label: "objmount.fuse.notify")
    private var mountpoint: String?
    private var signalHandlersSet = false
    /// A second descriptor of the FUSE device, numbered above every descriptor open at mount
    /// (see `holdDeviceLast`); -1 when there is none.
    private var lateDevice: Int32 = -1
    /// Called once the kernel's INIT has been answered: the mount serves requests from then on.
    public var onInitialized: (@Sendable () -> Void)?

    public init(filesystem: any FuseFilesystem, options: FuseMountOptions) {
        self.filesystem = filesystem
        self.options = options
        self.pool = BufferPool(bufferSize: options.maxWrite)
        self.xattrNamespaces = filesystem.extendedAttributeNamespaces
    }

    /// Creates the session and mounts it. SIGINT, SIGTERM and SIGHUP end `run()` from then on.
    public func mount(at mountpoint: String) throws(FuseError) {
        var cArgs: [UnsafeMutablePointer<CChar>?] = options.arguments.map { strdup($0) }
        defer { cArgs.forEach { free($0) } }
        let se = cArgs.withUnsafeMutableBufferPointer { argv -> OpaquePointer? in
            var args = cfuse_args_init(Int32(argv.count), argv.baseAddress)
            var ops = FuseSession.operations
            let se = cfuse_session_new(&args, &ops, Unmanaged.passUnretained(self).toOpaque())
            fuse_opt_free_args(&args)
            return se
        }
        guard let se else { throw FuseError(EINVAL) }
        session = se
        // A daemon started with `&` by a non-interactive shell inherits SIGINT as ignored, and
        // fuse_set_signal_handlers leaves ignored signals alone (FUSE-NOTES.md gotcha 1).
        cfuse_reset_signal_dispositions()
        if fuse_set_signal_handlers(se) != 0 {
            fuse_session_destroy(se)
            session = nil
            throw FuseError(EIO)
        }
        signalHandlersSet = true
        if fuse_session_mount(se, mountpoint) != 0 {
            fuse_remove_signal_handlers(se)
            fuse_session_destroy(se)
            session = nil
            throw FuseError(EIO)
        }
        self.mountpoint = mountpoint
        notifiable.withLock { $0 = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(se))) }
        if options.autoUnmount { lateDevice = Self.holdDeviceLast(fuse_session_fd(se)) }
        if options.readAheadKiB > 0 { Self.raiseReadAhead(mountpoint: mountpoint, kib: options.readAheadKiB) }
    }

    /// Serves requests until the filesystem is unmounted or a signal arrives, then drains the
    /// requests in flight, unmounts, lets the filesystem store what is pending, and destroys the
    /// session. Returns 0, or a negative errno if the loop failed.
    public func run() -> Int32 {
        guard let se = session else { return -EINVAL }
        let r = cfuse_session_loop_mt(se, 0, -1)
        notifiable.withLock { $0 = 0 }
        // Requests already handed to Tasks finish (and reply) before the session goes away.
        var waited = 0
        while inFlight.load(ordering: .acquiring) > 0 && waited < 60_000 {
            usleep(1000)
            waited += 1
        }
        // Before the unmount: with the device still open, a synchronous umount would wait for
        // an answer to DESTROY that nobody reads.
        if lateDevice >= 0 { close(lateDevice); lateDevice = -1 }
        fuse_session_unmount(se)
        let fs = filesystem
        Self.blockingAwait { await fs.shutdown() }
        if signalHandlersSet { fuse_remove_signal_handlers(se) }
        fuse_session_destroy(se)
        session = nil
        // fuse_session_loop returns the signal number after a signal: that is a clean exit.
        return r > 0 ? 0 : r
    }

    /// When the daemon is killed, libfuse's auto_unmount helper wakes as the daemon's end of
    /// its socket closes, opens the mountpoint, and unmounts only if that fails with ENOTCONN.
    /// If the FUSE device is still open at that moment, the open is queued and ends with
    /// ECONNABORTED when the device closes: the helper gives up and a dead mount is left (1 in
    /// 12 SIGKILLs under CPU load). At exit the kernel closes descriptors in ascending order and
    /// releases the files in the reverse order, so a descriptor of the device numbered above
    /// the socket makes the device's release (which ends the connection) come first.
    static func holdDeviceLast(_ fd: Int32) -> Int32 {
        guard fd >= 0 else { return -1 }
        var highest = fd
        if let dir = Glibc.opendir("/proc/self/fd") {
            while let entry = Glibc.readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if let n = Int32(name), n > highest { highest = n }
            }
            Glibc.closedir(dir)
        }
        return fcntl(fd, F_DUPFD_CLOEXEC, highest + 1)
    }

    /// Requests handed to the filesystem and not answered yet.
    public var requestsInFlight: Int { inFlight.load(ordering: .relaxed) }

    /// Requests received so far: unchanged over an interval, the mount was idle in it.
    public var requestsReceived: Int { received.load(ordering: .relaxed) }

    /// Frees the write buffers kept for reuse (call when the mount is idle).
    public func releaseIdleBuffers() { pool.drain() }

    /// Ends `run()` from another thread.
    public func exit() {
        if let se = session { fuse_session_exit(se) }
    }

    static func blockingAwait(_ body: @escaping @Sendable () async -> Void) {
        let done = DispatchSemaphore(value: 0)
        Task {
            await body()
            done.signal()
        }
        done.wait()
    }

    /// READ requests are 128 KiB unless the mount's bdi read_ahead_kb is raised (root only).
    /// The bdi is found from /proc/self/mountinfo, not by stat(), which would send a request to
    /// this filesystem before its loop runs.
    static func raiseReadAhead(mountpoint: String, kib: Int) {
        guard let device = MountTable.current().first(where: { $0.mountpoint == mountpoint })?.device else { return }
        let path = "/sys/class/bdi/\(device)/read_ahead_kb"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        let text = "\(kib)\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
    }

    // MARK: - Names

    /// A name from the kernel, or nil if it is not valid UTF-8. Object keys are UTF-8: a name
    /// that is not cannot be stored, and repairing it would make two names one key.
    static func decodeName(_ p: UnsafePointer<CChar>?) -> String? {
        guard let p else { return nil }
        return String(validatingCString: p)
    }

    static func valid(_ name: String?, missing errno: Int32 = EILSEQ) throws(FuseError) -> String {
        guard let name else { throw FuseError(errno) }
        return name
    }

    // MARK: - Replies

    static func session(_ req: fuse_req_t?) -> FuseSession {
        Unmanaged<FuseSession>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    static func errno(of error: any Error) -> Int32 {
        switch error {
        case let e as FuseError: return e.errno
        case is CancellationError: return EINTR
        default: return EIO
        }
    }

    /// Runs `work` in a Task and replies exactly once: with `reply` on success, or
    /// fuse_reply_err on failure. Every request except forget goes through here.
    /// `keepsAttributes`: the request changes no attributes (AttributeCache); any other makes
    /// the attributes kept so far stale, when it comes and when it ends.
    func respond<T: Sendable>(
        _ req: Request, keepsAttributes: Bool = false, _ work: @escaping @Sendable () async throws -> T,
        reply: @escaping @Sendable (Request, T) -> Void
    ) {
        inFlight.add(1, ordering: .relaxed)
        received.add(1, ordering: .relaxed)
        let attributeCache = keepsAttributes ? nil : self.attributes
        attributeCache?.changed()
        // FUSE_INTERRUPT (the caller got a signal) cancels the request's task: an fsync waiting
        // for a server returns EINTR. Registered before the task can reply (libfuse frees the
        // request with its reply); the callback finds the task by the request's address.
        let key = UInt(bitPattern: req.raw)
        fuse_req_interrupt_func(
            req.raw, { _, data in FuseSession.interrupt(UInt(bitPattern: data)) },
            UnsafeMutableRawPointer(bitPattern: key))
        // The task runs on this thread while it has work here (RequestExecutor).
        let executor = RequestExecutor()
        let task = Task(executorPreference: executor) {
            defer {
                attributeCache?.changed()
                self.inFlight.subtract(1, ordering: .releasing)
                executor.finish()
            }
            let value: T
            do {
                value = try await work()
            } catch {
                FuseSession.finished(key)
                if Task.isCancelled { _ = fuse_reply_err(req.raw, EINTR) } else { self.replyError(req, error) }
                return
            }
            FuseSession.finished(key)
            reply(req, value)
        }
        FuseSession.started(key, task)
        executor.serve(idle: Self.requestIdle)
    }

    /// How long a libfuse thread waits for more of its request's work (an I/O thread's answer)
    /// before it leaves the rest to the global pool: longer than a page-cache read or an
    /// fdatasync here, much shorter than a server's reply.
    static let requestIdle = 1_000_000

    /// Tells the kernel to drop its entry for `name` in directory `parent` (and the negative
    /// entry, if it cached one), so that its next use looks the name up again: for changes the
    /// filesystem makes by itself, which the kernel did not see go by. Returns at once.
    public func invalidateEntry(parent: Inode, name: String) {
        notifications.async { [self] in
            notifiable.withLock { address in
                guard let se = OpaquePointer(bitPattern: address) else { return }
                // ENOENT: the kernel holds no such entry. Nothing else to do either way.
                _ = name.withCString { fuse_lowlevel_notify_inval_entry(se, parent, $0, strlen($0)) }
            }
        }
    }

    /// Whether the kernel holds `ino` (its lookup count is above zero).
    public func holds(_ ino: Inode) -> Bool { lookups.count(ino) > 0 }

    /// Tasks of requests in flight that an interrupt may cancel, by request address; `nil`: the
    /// task ended before it was entered.
    private static let running = Mutex<[UInt: Task<Void, Never>?]>([:])

    private static func started(_ key: UInt, _ task: Task<Void, Never>) {
        running.withLock { table in
            if table[key] != nil {
                table[key] = nil  // it already ended
            } else {
                table[key] = .some(task)
            }
        }
    }

    private static func finished(_ key: UInt) {
        running.withLock { table in
            if table[key] != nil {
                table[key] = nil
            } else {
                table[key] = .some(nil)  // ended before `started`
            }
        }
    }

    private static func interrupt(_ key: UInt) {
        let task = running.withLock { $0[key] ?? nil }
        task?.cancel()
    }

    static func replyXattr(_ req: Request, _ value: [UInt8], size: Int) {
        if size == 0 {
            _ = fuse_reply_xattr(req.raw, value.count)
        } else if value.count > size {
            _ = fuse_reply_err(req.raw, ERANGE)
        } else {
            _ = value.withUnsafeBytes { b in
                fuse_reply_buf(req.raw, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count)
            }
        }
    }

    func replyError(_ req: Request, _ error: any Error) {
        _ = fuse_reply_err(req.raw, Self.errno(of: error))
    }

    func fillStat(_ a: FuseAttributes) -> stat {
        var st = stat()
        st.st_ino = UInt(a.ino)
        st.st_mode = a.mode
        st.st_nlink = UInt(a.nlink)
        st.st_uid = a.uid
        st.st_gid = a.gid
        st.st_size = Int(a.size)
        st.st_blksize = 1 << 20
        st.st_blocks = Int((a.size + 511) / 512)
        let t = timespec(tv_sec: Int(a.mtimeSeconds), tv_nsec: Int(a.mtimeNanoseconds))
        st.st_mtim = t
        st.st_atim = t
        st.st_ctim = t
        return st
    }

    func entryParam(_ a: FuseAttributes) -> fuse_entry_param {
        var e = fuse_entry_param()
        e.ino = a.ino
        e.generation = 0
        e.attr = fillStat(a)
        e.attr_timeout = a.cacheSeconds ?? options.attributeTimeout
        e.entry_timeout = a.cacheSeconds ?? options.entryTimeout
        return e
    }

    /// Replies with an entry, counting the lookup first and taking it back if the kernel did
    /// not get the reply.
    func replyEntry(_ req: Request, _ a: FuseAttributes) {
        lookups.add(a.ino)
        var e = entryParam(a)
        if fuse_reply_entry(req.raw, &e) != 0 { dropLookups(a.ino, 1) }
    }

    func replyCreate(_ req: Request, _ a: FuseAttributes, _ open: FuseOpenResult, _ fi: FileInfoCopy) {
        lookups.add(a.ino)
        var e = entryParam(a)
        var info = fi.info
        info.fh = open.handle
        info.keep_cache = open.keepCache ? 1 : 0
        if fuse_reply_create(req.raw, &e, &info) != 0 {
            dropLookups(a.ino, 1)
            let fs = filesystem
            Task { await fs.release(a.ino, handle: open.handle) }
        }
    }

    /// Forgets at a lookup count of zero go to the filesystem in batches, by one task at a
    /// time: a kernel that drops a directory of 100,000 entries sends as many forgets at once,
    /// and a task each (100,000 of them) held some 60 MB until the actor took them.
    func dropLookups(_ ino: Inode, _ n: UInt64) {
        guard lookups.forget(ino, n), ino != FUSE_ROOT_ID else { return }
        let start = forgotten.withLock { f in
            f.inodes.append(ino)
            defer { f.draining = true }
            return !f.draining
        }
        guard start else { return }
        let fs = filesystem
        inFlight.add(1, ordering: .relaxed)
        received.add(1, ordering: .relaxed)
        Task {
            while true {
                let batch = self.forgotten.withLock { f in
                    let batch = f.inodes.prefix(4096)
                    f.inodes.removeFirst(batch.count)
                    if batch.isEmpty { f.draining = false }
                    return Array(batch)
                }
                if batch.isEmpty { break }
                await fs.forget(batch)
            }
            self.inFlight.subtract(1, ordering: .releasing)
        }
    }

    func readdir(_ req: Request, ino: Inode, size: Int, offset: Int64, handle: UInt64, plus: Bool) {
        let fs = filesystem
        respond(req, { try await fs.readdir(ino, handle: handle, offset: offset) }) { req, entries in
            var buffer = [CChar](repeating: 0, count: size)
            var used = 0
            var counted: [Inode] = []
            buffer.withUnsafeMutableBufferPointer { buf in
                for entry in entries {
                    let left = size - used
                    let need: Int = entry.name.withCString { cname in
                        if plus {
                            var e = self.entryParam(entry.attributes)
                            if !entry.cacheable {
                                e.entry_timeout = 0
                                e.attr_timeout = 0
                            }
                            // "." and "..", and entries of unknown type: a name only (inode 0 in
                            // readdirplus means "no entry given", not ENOENT), no lookup counted.
                            let nameOnly = entry.name == "." || entry.name == ".." || !entry.typeKnown
                            if nameOnly { e = fuse_entry_param(); e.attr = self.fillStat(entry.attributes) }
                            if !entry.typeKnown { e.attr.st_mode &= 0o7777 }
                            let n = fuse_add_direntry_plus(
                                req.raw, buf.baseAddress! + used, left, cname, &e, off_t(entry.nextOffset))
                            if n <= left && !nameOnly {
                                self.lookups.add(entry.attributes.ino)
                                counted.append(entry.attributes.ino)
                            }
                            return n
                        } else {
                            var st = self.fillStat(entry.attributes)
                            if !entry.typeKnown { st.st_mode &= 0o7777 }
                            return fuse_add_direntry(
                                req.raw, buf.baseAddress! + used, left, cname, &st, off_t(entry.nextOffset))
                        }
                    }
                    if need > left { break }
                    used += need
                }
            }
            // readdirplus never errors once entries are in the buffer (fuse_lowlevel.h).
            if fuse_reply_buf(req.raw, buffer, used) != 0 {
                for ino in counted { self.dropLookups(ino, 1) }
            }
        }
    }

    // MARK: - The operation table

    static var operations: fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            let s = Unmanaged<FuseSession>.fromOpaque(userdata!).takeUnretainedValue()
            s.negotiate(conn!)
        }
        ops.lookup = { req, parent, name in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            let asked = s.attributes.generation
            s.respond(
                Request(raw: req!), keepsAttributes: true,
                { () async throws -> FuseAttributes? in
                    do {
                        guard let n else { throw FuseError(ENOENT) }  // no object can have this name
                        return try await fs.lookup(parent: parent, name: n)
                    } catch let e as FuseError where e.errno == ENOENT && s.options.negativeTimeout > 0 {
                        return nil
                    }
                }
            ) { req, attributes in
                if let a = attributes {
                    s.attributes.keep(a, for: a.cacheSeconds ?? s.options.attributeTimeout, askedAt: asked)
                    s.replyEntry(req, a)
                } else {
                    // A negative entry the kernel may cache for negativeTimeout.
                    var e = fuse_entry_param()
                    e.entry_timeout = s.options.negativeTimeout
                    _ = fuse_reply_entry(req.raw, &e)
                }
            }
        }
        ops.forget = { req, ino, nlookup in
            let s = FuseSession.session(req)
            s.dropLookups(ino, nlookup)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, forgets in
            let s = FuseSession.session(req)
            for i in 0..<count {
                let f = forgets![i]
                s.dropLookups(f.ino, f.nlookup)
            }
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, _ in
            let s = FuseSession.session(req)
            if let (a, seconds) = s.attributes.fresh(ino) {
                s.received.add(1, ordering: .relaxed)  // `respond` counts the others
                var st = s.fillStat(a)
                _ = fuse_reply_attr(req, &st, seconds)
                return
            }
            let fs = s.filesystem
            let asked = s.attributes.generation
            s.respond(Request(raw: req!), keepsAttributes: true, { try await fs.getattr(ino) }) { req, a in
                var st = s.fillStat(a)
                let seconds = a.cacheSeconds ?? s.options.attributeTimeout
                s.attributes.keep(a, for: seconds, askedAt: asked)
                _ = fuse_reply_attr(req.raw, &st, seconds)
            }
        }
        ops.setattr = { req, ino, attr, toSet, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let st = attr!.pointee
            var c = FuseSetAttributes()
            if toSet & FUSE_SET_ATTR_MODE != 0 { c.mode = st.st_mode & 0o7777 }
            if toSet & FUSE_SET_ATTR_UID != 0 { c.uid = st.st_uid }
            if toSet & FUSE_SET_ATTR_GID != 0 { c.gid = st.st_gid }
            if toSet & FUSE_SET_ATTR_SIZE != 0 { c.size = Int64(st.st_size) }
            if toSet & FUSE_SET_ATTR_MTIME_NOW != 0 {
                c.mtime = .now
            } else if toSet & FUSE_SET_ATTR_MTIME != 0 {
                c.mtime = .set(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec))
            }
            if toSet & FUSE_SET_ATTR_ATIME_NOW != 0 {
                c.atime = .now
            } else if toSet & FUSE_SET_ATTR_ATIME != 0 {
                c.atime = .set(seconds: Int64(st.st_atim.tv_sec), nanoseconds: Int32(st.st_atim.tv_nsec))
            }
            let handle = fi.map { $0.pointee.fh }
            let changes = c
            s.respond(Request(raw: req!), { try await fs.setattr(ino, changes, handle: handle) }) { req, a in
                var out = s.fillStat(a)
                _ = fuse_reply_attr(req.raw, &out, a.cacheSeconds ?? s.options.attributeTimeout)
            }
        }
        ops.opendir = { req, ino, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let info = FileInfoCopy(info: fi!.pointee)
            s.respond(Request(raw: req!), keepsAttributes: true, { try await fs.opendir(ino) }) { req, fh in
                var i = info.info
                i.fh = fh
                if fuse_reply_open(req.raw, &i) != 0 { Task { await fs.releasedir(ino, handle: fh) } }
            }
        }
        ops.readdir = { req, ino, size, off, fi in
            FuseSession.session(req).readdir(
                Request(raw: req!), ino: ino, size: size, offset: Int64(off), handle: fi!.pointee.fh, plus: false)
        }
        ops.readdirplus = { req, ino, size, off, fi in
            FuseSession.session(req).readdir(
                Request(raw: req!), ino: ino, size: size, offset: Int64(off), handle: fi!.pointee.fh, plus: true)
        }
        ops.releasedir = { req, ino, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            s.respond(Request(raw: req!), keepsAttributes: true, { await fs.releasedir(ino, handle: fh) }) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.mkdir = { req, parent, name, mode in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            s.respond(
                Request(raw: req!),
                { try await fs.mkdir(parent: parent, name: try FuseSession.valid(n), mode: UInt32(mode)) }
            ) {
                s.replyEntry($0, $1)
            }
        }
        ops.rmdir = { req, parent, name in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            s.respond(
                Request(raw: req!),
                { try await fs.rmdir(parent: parent, name: try FuseSession.valid(n, missing: ENOENT)) }
            ) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.unlink = { req, parent, name in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            s.respond(
                Request(raw: req!),
                { try await fs.unlink(parent: parent, name: try FuseSession.valid(n, missing: ENOENT)) }
            ) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.rename = { req, parent, name, newParent, newName, flags in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let from = FuseSession.decodeName(name)
            let to = FuseSession.decodeName(newName)
            s.respond(
                Request(raw: req!),
                {
                    if flags & UInt32(CFUSE_RENAME_EXCHANGE) != 0 { throw FuseError(EINVAL) }
                    let noReplace = flags & UInt32(CFUSE_RENAME_NOREPLACE) != 0
                    try await fs.rename(
                        parent: parent, name: try FuseSession.valid(from, missing: ENOENT), newParent: newParent,
                        newName: try FuseSession.valid(to), noReplace: noReplace)
                }
            ) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.create = { req, parent, name, mode, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            let info = FileInfoCopy(info: fi!.pointee)
            let flags = info.info.flags
            s.respond(
                Request(raw: req!),
                {
                    try await fs.create(
                        parent: parent, name: try FuseSession.valid(n), mode: UInt32(mode), flags: flags)
                }
            ) {
                req, result in
                s.replyCreate(req, result.0, result.1, info)
            }
        }
        ops.open = { req, ino, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let info = FileInfoCopy(info: fi!.pointee)
            let flags = info.info.flags
            s.respond(Request(raw: req!), { try await fs.open(ino, flags: flags) }) { req, result in
                var i = info.info
                i.fh = result.handle
                i.keep_cache = result.keepCache ? 1 : 0
                if fuse_reply_open(req.raw, &i) != 0 { Task { await fs.release(ino, handle: result.handle) } }
            }
        }
        ops.read = { req, ino, size, off, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            // Bytes already in memory are sent from this thread: no Task to wake, no second
            // thread. For random 4 KiB reads the wake-up is most of the cost; for the kernel's
            // 1 MiB read-ahead requests the Task and its array cost the daemon about a tenth of
            // its CPU per GiB read. The buffer comes and goes with the request.
            do {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
                defer { buffer.deallocate() }
                if let n = fs.readImmediately(ino, handle: fh, offset: Int64(off), into: buffer) {
                    s.received.add(1, ordering: .relaxed)  // `respond` counts the others
                    _ = fuse_reply_buf(req, buffer.baseAddress?.assumingMemoryBound(to: CChar.self), n)
                    return
                }
            }
            s.respond(
                Request(raw: req!), keepsAttributes: true,
                { try await fs.read(ino, handle: fh, offset: Int64(off), size: size) }
            ) {
                req, bytes in
                _ = bytes.withUnsafeBytes { b in
                    fuse_reply_buf(req.raw, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count)
                }
            }
        }
        ops.write = { req, ino, buf, size, off, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            // libfuse reuses its receive buffer as soon as this callback returns.
            let copy = s.pool.take(size)
            copy.buffer.copyMemory(from: UnsafeRawBufferPointer(start: buf, count: size))
            let data = FuseWriteBuffer(bytes: UnsafeRawBufferPointer(rebasing: copy.buffer[0..<size]))
            let pool = s.pool
            s.respond(
                Request(raw: req!),
                {
                    defer { pool.give(copy) }
                    return try await fs.write(ino, handle: fh, offset: Int64(off), buffer: data)
                }
            ) { req, n in
                _ = fuse_reply_write(req.raw, n)
            }
        }
        ops.flush = { req, ino, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            s.respond(Request(raw: req!), { try await fs.flush(ino, handle: fh) }) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.fsync = { req, ino, datasync, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            s.respond(Request(raw: req!), { try await fs.fsync(ino, handle: fh, dataOnly: datasync != 0) }) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.fsyncdir = { req, ino, datasync, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            s.respond(Request(raw: req!), { try await fs.fsyncdir(ino, handle: fh, dataOnly: datasync != 0) }) {
                req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.release = { req, ino, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            s.respond(Request(raw: req!), { await fs.release(ino, handle: fh) }) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.statfs = { req, ino in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            s.respond(Request(raw: req!), keepsAttributes: true, { try await fs.statfs(ino) }) { req, st in
                var v = statvfs()
                v.f_bsize = UInt(st.blockSize)
                v.f_frsize = UInt(st.blockSize)
                v.f_blocks = UInt(st.blocks)
                v.f_bfree = UInt(st.blocksFree)
                v.f_bavail = UInt(st.blocksFree)
                v.f_files = UInt(st.files)
                v.f_ffree = UInt(st.filesFree)
                v.f_favail = UInt(st.filesFree)
                v.f_namemax = UInt(st.nameMax)
                _ = fuse_reply_statfs(req.raw, &v)
            }
        }
        // Symbolic links, hard links, special files and preallocation. A successful entry
        // reply (symlink, link, mknod) counts as a lookup, like mkdir (replyEntry).
        ops.symlink = { req, target, parent, name in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            let t = FuseSession.decodeName(target)
            s.respond(
                Request(raw: req!),
                {
                    try await fs.symlink(
                        parent: parent, name: try FuseSession.valid(n), target: try FuseSession.valid(t))
                }
            ) {
                s.replyEntry($0, $1)
            }
        }
        ops.readlink = { req, ino in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            s.respond(Request(raw: req!), keepsAttributes: true, { try await fs.readlink(ino) }) { req, target in
                _ = target.withCString { fuse_reply_readlink(req.raw, $0) }
            }
        }
        ops.link = { req, ino, newParent, newName in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(newName)
            s.respond(
                Request(raw: req!), { try await fs.link(ino, newParent: newParent, newName: try FuseSession.valid(n)) }
            ) {
                s.replyEntry($0, $1)
            }
        }
        ops.mknod = { req, parent, name, mode, rdev in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            s.respond(
                Request(raw: req!),
                {
                    try await fs.mknod(
                        parent: parent, name: try FuseSession.valid(n), mode: UInt32(mode), rdev: UInt64(rdev))
                }
            ) {
                s.replyEntry($0, $1)
            }
        }
        ops.fallocate = { req, ino, mode, offset, length, fi in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let fh = fi!.pointee.fh
            s.respond(
                Request(raw: req!),
                {
                    try await fs.fallocate(ino, handle: fh, mode: mode, offset: Int64(offset), length: Int64(length))
                }
            ) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        // Extended attributes: a `size` of 0 asks for the length only; a value longer than
        // `size` is ERANGE.
        ops.listxattr = { req, ino, size in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            s.respond(Request(raw: req!), keepsAttributes: true, { try await fs.listxattr(ino) }) { req, names in
                let list: [UInt8] = names.flatMap { (n: String) -> [UInt8] in Array(n.utf8) + [0] }
                FuseSession.replyXattr(req, list, size: size)
            }
        }
        ops.getxattr = { req, ino, name, size in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            // A namespace the filesystem has no attributes in (security.*, system.* ACLs,
            // trusted.*) is ENOTSUP, as on a Linux filesystem without a handler for it: `ls -l`
            // then stops asking for SELinux labels and ACLs on this mount (two requests per file).
            if let n, !s.xattrNamespaces.contains(where: { n.hasPrefix($0) }) {
                _ = fuse_reply_err(req, ENOTSUP)
                return
            }
            s.respond(
                Request(raw: req!), keepsAttributes: true,
                { try await fs.getxattr(ino, name: try FuseSession.valid(n, missing: ENODATA)) }
            ) {
                req, value in
                FuseSession.replyXattr(req, value, size: size)
            }
        }
        ops.setxattr = { req, ino, name, value, size, flags in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            let bytes = value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) } ?? []
            s.respond(
                Request(raw: req!),
                {
                    try await fs.setxattr(
                        ino, name: try FuseSession.valid(n, missing: ENOTSUP), value: bytes, flags: flags)
                }
            ) { req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        ops.removexattr = { req, ino, name in
            let s = FuseSession.session(req)
            let fs = s.filesystem
            let n = FuseSession.decodeName(name)
            s.respond(
                Request(raw: req!), { try await fs.removexattr(ino, name: try FuseSession.valid(n, missing: ENODATA)) }
            ) {
                req, _ in
                _ = fuse_reply_err(req.raw, 0)
            }
        }
        return ops
    }

    func negotiate(_ conn: UnsafeMutablePointer<fuse_conn_info>) {
        let c = conn.pointee
        var want = c.want
        for cap in [FUSE_CAP_ASYNC_READ, FUSE_CAP_ATOMIC_O_TRUNC, FUSE_CAP_PARALLEL_DIROPS, FUSE_CAP_AUTO_INVAL_DATA] {
            if c.capable & UInt32(cap) != 0 { want |= UInt32(cap) }
        }
        if options.readdirPlus, c.capable & UInt32(FUSE_CAP_READDIRPLUS) != 0 {
            want |= UInt32(FUSE_CAP_READDIRPLUS)
            want &= ~UInt32(FUSE_CAP_READDIRPLUS_AUTO)
        }
        // Splice only pays off for fd-backed replies (FUSE-NOTES.md §3); replies here are memory.
        want &= ~UInt32(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE)
        want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE)
        // No getlk/setlk/flock operations: the kernel keeps flock and fcntl locks local to this
        // mount (they conflict between processes here, never with other clients of the store).
        want &= ~UInt32(FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS)
        conn.pointee.want = want
        conn.pointee.max_write = UInt32(options.maxWrite)
        conn.pointee.max_readahead = UInt32(options.maxWrite)
        // Must mirror `-o max_read`, or libfuse 3.14 fails INIT with EPROTO (FUSE-NOTES.md gotcha 2).
        conn.pointee.max_read = UInt32(options.maxWrite)
        conn.pointee.max_background = 64
        conn.pointee.congestion_threshold = 48
        conn.pointee.time_gran = 1
        onInitialized?()
    }
}
