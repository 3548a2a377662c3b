// Mounting: the foreground server, and the background start that runs the same binary in
// foreground mode as a new session (never fork() a running Swift process) and waits until
// it reports the mount live, or relays its error.

import ClientEncryption
import Dispatch
import FuseKit
import MemoryStorage
import ObjectFS
import ObjectStorage
import OpenStackStorage
import StorageHTTP
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

enum Daemon {
    static let readyFDVariable = "OBJMOUNT_READY_FD"
    static let readyMessage = "ready"

    static func startInBackground(arguments: [String], cacheDirectory: String, mountpoint: String) throws(CLIError) {
        let logPath = cacheDirectory + "/objmount.log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard log >= 0 else { throw CLIError("cannot open log file \(logPath): \(errnoText(errno))") }
        defer { close(log) }
        var p: [Int32] = [0, 0]
        guard Spawn.makePipe(&p) else { throw CLIError("pipe: \(errnoText(errno))") }
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        setenv(readyFDVariable, "3", 1)
        let pid: pid_t
        do {
            pid = try Spawn.start(
                "/proc/self/exe", arguments, fds: [0: devnull, 1: log, 2: log, 3: p[1]], newSession: true)
        } catch {
            close(p[0]); close(p[1]); close(devnull)
            throw error
        }
        unsetenv(readyFDVariable)
        close(p[1])
        close(devnull)
        var pfd = pollfd(fd: p[0], events: Int16(POLLIN), revents: 0)
        var reply = ""
        let deadline = 120_000
        var waited = 0
        while waited < deadline {
            let r = poll(&pfd, 1, 250)
            if r < 0 && errno == EINTR { continue }
            if r == 0 {
                waited += 250
                continue
            }
            reply = Spawn.readLine(p[0])
            break
        }
        close(p[0])
        let line = reply.split(separator: "\n").first.map(String.init) ?? ""
        if line == readyMessage {
            writeAll(1, "objmount: \(mountpoint) is mounted; its log is \(logPath)\n")
            return
        }
        if waited >= deadline {
            kill(pid, SIGTERM)
            throw CLIError("the mount did not become ready within 120 s; see \(logPath)")
        }
        let status = Spawn.wait(pid)
        throw CLIError(line.isEmpty ? "the mount daemon exited with status \(status); see \(logPath)" : line)
    }

    /// Serves the mount in this process until it is unmounted or signalled.
    static func serve(
        remote: Remote, driver: DriverSettings, mountpoint: String, options: MountOptions, seed: String?,
        cacheDirectory: String, cache: CacheSettings, writeBack: Bool,
        metadata: MetadataSettings, segmentMiB: Int?, encryptionKey: [UInt8]? = nil, logger: Logger
    ) throws(CLIError) {
        MemoryTuning.apply()
        DescriptorLimit.raise()
        if logger.level == .debug { RequestLog.send { logger.debug($0) } }
        let readyFD = Paths.environment(readyFDVariable).flatMap { Int32($0) }
        unsetenv(readyFDVariable)
        // dup2 cleared close-on-exec; helpers libfuse starts (fusermount3) must not hold it open.
        if let fd = readyFD { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        func fail(_ message: String) -> CLIError {
            if let fd = readyFD {
                writeAll(fd, message + "\n")
                close(fd)
            }
            return CLIError(message)
        }
        var storage: any ObjectStorage
        var transport: AHCTransport? = nil
        defer {
            if let t = transport { try? blockingAwait { await t.shutdown() } }
        }
        switch remote.scheme {
        case .memory:
            let memory = MemoryStorage()
            if let seed {
                let counts: Seeder.Counts
                do {
                    counts = try blockingAwait { try await Seeder.seed(memory, from: seed, prefix: remote.prefix) }
                } catch {
                    throw fail("cannot seed from \(seed): \(error)")
                }
                logger.info("seeded \(counts.files) files and \(counts.directories) directories from \(seed)")
                for path in counts.skipped { logger.warning("seed: skipped \(path) (not a regular file or directory)") }
            }
            storage = memory
        default:
            do {
                let (s, t) = try blockingAwait { try await Drivers.open(remote, driver) }
                storage = s
                transport = t
            } catch {
                throw fail(Drivers.failure(of: remote, error, doing: "cannot open"))
            }
        }
        var identity = "\(remote.scheme.rawValue) \(driver.location) \(remote.container ?? "")"
        if let encryptionKey {
            storage = EncryptedStorage(storage, key: encryptionKey, scratch: cacheDirectory)
            // Its cached blocks are plaintext: never those of an unencrypted mount of the remote.
            identity += " encrypted"
            logger.info("files are stored and read in ks3sdk's client-side encryption format")
        }
        // Files being written and the write-back journal live in one directory per remote and
        // prefix, which outlives the mount: a later mount stores what this one could not.
        // (memory:// stores die with their process: nothing to recover.)
        let journaled = remote.scheme != .memory
        let stagingDirectory =
            journaled
            ? ObjectFS.journalDirectory(under: cacheDirectory, for: identity + " " + remote.prefix)
            : cacheDirectory + "/staging-\(getpid())"
        var configuration = ObjectFSConfiguration(prefix: remote.prefix, stagingDirectory: stagingDirectory)
        configuration.journaled = journaled
        configuration.writeBack = writeBack
        configuration.log = { logger.warning($0) }
        configuration.fixedOwner = options.uid != nil || options.gid != nil
        // A directory's file metadata (HEADs, when listings carry none) is fetched 32 at a time
        // at first, then 16 to 128 as the server's answer time allows.
        if remote.scheme != .memory {
            configuration.metadataPrefetch = 32
            configuration.metadataPrefetchMaximum = 128
        }
        configuration.memoryLimit = cache.memoryLimit
        let cacheSize =
            cache.cacheSize ?? (remote.scheme == .memory ? 0 : CacheSettings.defaultSize(of: cacheDirectory))
        if cacheSize > 0 {
            configuration.blockCacheDirectory = ObjectFS.blockCacheDirectory(under: cacheDirectory, for: identity)
            configuration.blockCacheSize = cacheSize
            configuration.blockCacheFreeSpaceFloor = CacheSettings.freeSpaceFloor(of: cacheDirectory)
        }
        if let uid = options.uid { configuration.uid = uid }
        if let gid = options.gid { configuration.gid = gid }
        if let umask = options.umask { configuration.umask = umask }
        configuration.readOnly = options.readOnly
        configuration.metadataTTL = .milliseconds(Int64(metadata.ttl * 1000))
        configuration.listingMetadataTrusted = metadata.listingMtime
        // The session is made after the filesystem: names the filesystem changes by itself reach
        // the kernel once it is there.
        let kernel = Mutex<FuseSession?>(nil)
        configuration.invalidateEntry = { parent, name in
            kernel.withLock { $0 }?.invalidateEntry(parent: parent, name: name)
        }
        configuration.inodeLimit = metadata.inodeLimit
        configuration.kernelHolds = { ino in kernel.withLock { $0 }?.holds(ino) ?? false }
        if let mib = segmentMiB {
            configuration.partSize = Int64(mib) << 20
            configuration.multipartThreshold = Int64(mib) << 20
        }
        let fs: ObjectFS
        do { fs = try ObjectFS(storage: storage, configuration: configuration) } catch { throw fail(error.message) }
        if let problem = fs.blockCacheProblem {
            logger.warning("\(problem): reads go through memory only")
        } else if let directory = configuration.blockCacheDirectory {
            logger.info("block cache \(directory), up to \(ByteSize(bytes: configuration.blockCacheSize))")
        }
        defer { rmdir(stagingDirectory) }
        let recovery = try? blockingAwait { await fs.recoverPending() }
        if let recovery, !recovery.keys.isEmpty {
            logger.info(
                "storing \(recovery.keys.count) file(s) (\(ByteSize(bytes: recovery.bytes).approximate)) that an earlier mount of this remote closed but did not store"
            )
        }
        for key in recovery?.lost ?? [] {
            logger.error("an earlier mount left \(key) pending, but its data is gone from \(stagingDirectory)")
        }

        var fuseOptions = FuseMountOptions(fsName: "objmount:\(remote)")
        fuseOptions.allowOther = options.allowOther
        fuseOptions.readOnly = options.readOnly
        fuseOptions.kernelFlags = options.kernelFlags
        // Every reply says how long the kernel may keep it (the rest of the metadata TTL); these
        // are the bounds for any that would not.
        fuseOptions.entryTimeout = metadata.ttl
        fuseOptions.attributeTimeout = metadata.ttl
        fuseOptions.debug = logger.level == .debug && Paths.environment("OBJMOUNT_FUSE_DEBUG") != nil
        let report = Paths.unsavedReport(for: mountpoint)
        unlink(report)
        let bridge = FuseBridge(
            fs: fs, logger: logger, unsavedDirectory: Paths.unsavedDirectory(under: cacheDirectory),
            unsavedReport: Paths.makeDirectories(Paths.runtimeDirectory) ? report : nil,
            progressFile: Paths.progressFile(for: mountpoint))
        let session = FuseSession(filesystem: bridge, options: fuseOptions)
        kernel.withLock { $0 = session }
        let display = "\(remote)"
        session.onInitialized = {
            logger.info("mounted \(display) at \(mountpoint)")
            if let fd = readyFD {
                writeAll(fd, readyMessage + "\n")
                close(fd)
            }
        }
        do {
            try session.mount(at: mountpoint)
        } catch {
            throw fail("cannot mount \(remote) at \(mountpoint) (errno \(error.errno)); see the lines above")
        }
        let dump = Self.dumpStateOnSignal(fs: fs, session: session, logger: logger)
        defer { dump.cancel() }
        let trimmer = MemoryTuning.trimWhenIdle(
            activity: { session.requestsReceived },
            release: {
                session.releaseIdleBuffers()
                Task { await fs.trimInodeTable() }
            })
        defer { trimmer.cancel() }
        let pidFile = Paths.pidFile(for: mountpoint)
        if Paths.makeDirectories(Paths.runtimeDirectory) {
            let fd = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd >= 0 {
                writeAll(fd, "\(getpid())\n")
                close(fd)
            }
        }
        defer { unlink(pidFile) }
        let started = ContinuousClock.now
        let location = "\(remote)"
        let running = DaemonStatus.Options(
            writeBack: writeBack, metadataTTL: metadata.ttl, listingMtime: metadata.listingMtime,
            memoryLimit: cache.memoryLimit, maxInodes: metadata.inodeLimit, partSize: configuration.partSize,
            multipartThreshold: configuration.multipartThreshold)
        let status = StatusServer(path: Paths.statusSocket(pid: getpid())) {
            DaemonStatus(
                remote: location, mountpoint: mountpoint, pid: getpid(), uptime: ContinuousClock.now - started,
                fs: await fs.status(), requestsInFlight: session.requestsInFlight,
                uploadErrors: bridge.unsaved.count + bridge.lost.count, cacheDirectory: cacheDirectory,
                requests: TransferCounters.shared.requests,
                retries: TransferCounters.shared.retries, bytesUp: TransferCounters.shared.bytesUp,
                bytesDown: TransferCounters.shared.bytesDown, options: running)
        }
        if status == nil {
            logger.warning("objmount status cannot reach this mount: no socket in \(Paths.runtimeDirectory)")
        }
        defer { status?.stop() }
        let rc = session.run()
        logger.info("unmounted \(mountpoint)")
        if rc < 0 { throw CLIError("the session ended with an error (errno \(-rc))") }
        if !bridge.unsaved.isEmpty || !bridge.lost.isEmpty {
            throw CLIError(
                "\(bridge.unsaved.count + bridge.lost.count) file(s) could not be stored; "
                    + (bridge.unsaved.isEmpty ? "see the log" : "their data is kept in \(bridge.unsavedDirectory)"))
        }
    }

    /// `kill -USR1 <pid>` writes what the mount is doing and waiting for to its log.
    static func dumpStateOnSignal(fs: ObjectFS, session: FuseSession, logger: Logger) -> any DispatchSourceSignal {
        signal(SIGUSR1, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: .global())
        source.setEventHandler {
            let requests = session.requestsInFlight
            Task {
                let state = await fs.diagnostics()
                logger.info("state: \(requests) requests in flight\n" + state)
            }
        }
        source.resume()
        return source
    }

    /// The daemon serving `mountpoint`, from its pid file — only if that process is still an
    /// objmount serving this mountpoint (a pid file left by a killed daemon may name a reused pid).
    static func readPid(mountpoint: String) -> pid_t? {
        let fd = open(Paths.pidFile(for: mountpoint), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let text = Spawn.readAll(fd).split(separator: "\n").first ?? ""
        guard let pid = pid_t(text), isRunning(pid) else { return nil }
        let cmdFD = open("/proc/\(pid)/cmdline", O_RDONLY | O_CLOEXEC)
        guard cmdFD >= 0 else { return nil }
        defer { close(cmdFD) }
        let args = Spawn.readAll(cmdFD).split(separator: "\0").map(String.init)
        // `objmount mount SOURCE MNT`, or `objmount SOURCE MNT -o …` as mount.fuse3 runs it.
        let subcommands = Objmount.configuration.subcommands.map { $0._commandName }
        let mounting = args.contains("mount") || (args.count > 1 && !subcommands.contains(args[1]))
        guard mounting, args.contains(where: { Paths.absolute($0) == mountpoint }) else { return nil }
        return pid
    }

    /// Alive and not a zombie (a daemon whose parent exited may wait to be reaped).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let stat = Spawn.readAll(fd)
        // Fields after the parenthesised command name: the first is the state.
        guard let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(after: close)...].drop { $0 == " " }.first
        return state != "Z" && state != "X"
    }
}

/// Runs async work from synchronous code (the CLI's main thread) and waits for it.
func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphoreLite()
    Task {
        do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
        done.signal()
    }
    done.wait()
    return try box.get()
}

/// How long metadata is trusted, and whether a listing's Last-Modified is enough for `stat`.
struct MetadataSettings: Sendable {
    var ttl: Double
    var listingMtime: Bool
    /// `--max-inodes` (0: no limit).
    var inodeLimit = 100_000
}

/// Where the block cache goes and how big it and the memory budget are.
struct CacheSettings: Sendable {
    /// `nil`: the default of `defaultSize(of:)`.
    var cacheSize: Int64?
    var memoryLimit: Int64

    /// The smaller of 10 GiB and a tenth of the filesystem that holds `directory`.
    static func defaultSize(of directory: String) -> Int64 {
        var fs = statvfs()
        guard statvfs(directory, &fs) == 0 else { return 1 << 30 }
        return min(10 << 30, Int64(fs.f_blocks) * Int64(fs.f_frsize) / 10)
    }

    /// The cache gives blocks back when its filesystem has less free space than the smaller of
    /// 1 GiB and 5 % of its size.
    static func freeSpaceFloor(of directory: String) -> Int64 {
        var fs = statvfs()
        guard statvfs(directory, &fs) == 0 else { return 1 << 30 }
        return min(1 << 30, Int64(fs.f_blocks) * Int64(fs.f_frsize) / 20)
    }
}
