import ArgumentParser
import ClientEncryption
import FuseKit
import MemoryStorage
import ObjectFS
import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

public struct Objmount: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "objmount",
        abstract: "Mount object storage (OpenStack Swift, Hubic, S3, Kingsoft KS3) as a local directory.",
        discussion: """
            Examples:
              objmount mount memory://demo ./mnt --seed /usr/share/doc/apt
              cp -a ~/photos ./mnt/ && ls -l ./mnt/photos
              objmount unmount ./mnt

            Remotes are URLs: memory://<bucket>[/<prefix>] (an in-process store, empty at start), \
            swift://<container>[/<prefix>] (ST_* or OS_* variables), hubic://<container> (HUBIC_*), \
            s3://<bucket>[/<prefix>] (AWS_* variables, ~/.aws), ks3://<bucket>[/<prefix>] (KS3_*). \
            swift://, hubic:// and s3:// without a name mount the whole account.
            """,
        version: Objmount.version,
        subcommands: [
            Mount.self, Unmount.self, Sync.self, URLCommand.self, Cleanup.self, Login.self, Keygen.self,
            RemoteCommand.self, Status.self,
        ],
        // `objmount SOURCE MOUNTPOINT -o OPTIONS` is a mount: how mount.fuse3 runs the program
        // of `mount -t fuse.objmount` and of an fstab line.
        defaultSubcommand: Mount.self)

    /// This release, the commit it was built from, and the libraries it runs with (what a bug
    /// report needs).
    static let release = "0.15.0-dev"
    static var version: String {
        "objmount \(release) (commit \(buildCommit); libfuse \(FuseSession.libraryVersion), \(cryptoLibraryVersion))"
    }

    public init() {}

    /// Parses and runs a command; every failure is one line on stderr and a non-zero exit.
    public static func runMain(_ arguments: [String]? = nil) -> Never {
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Glibc.exit(0)
        } catch let e as CLIError {
            writeStderr("objmount: \(e.description)\n")
            Glibc.exit(e.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                writeAll(1, fullMessage(for: error) + "\n")
                Glibc.exit(0)
            }
            let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            let trimmed = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
            writeStderr("objmount: \(trimmed) (see objmount --help)\n")
            Glibc.exit(code.rawValue)
        }
    }
}

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mount a remote at a directory.",
        discussion: """
            Returns once the mount is live; the filesystem keeps being served in the background \
            (logs go to <cache-dir>/objmount.log). With --foreground it stays attached and logs to \
            stderr; Ctrl-C, SIGTERM or SIGHUP unmount it cleanly.

            Examples:
              objmount mount memory://demo ./mnt
              objmount mount memory://demo/photos ./mnt -o ro,uid=1000,gid=1000
              objmount mount memory://demo ./mnt --seed ./sample --foreground
            """)

    @Argument(
        help:
            "The remote, e.g. memory://bucket, s3://bucket/prefix, or NAME:bucket/prefix for a remote named in the config file."
    )
    var remote: String

    @Argument(help: "An empty directory to mount on.")
    var mountpoint: String

    @Option(
        name: .customShort("o"),
        help:
            "Mount options, comma-separated: allow_other, ro, uid=N, gid=N, umask=NNN (octal); nosuid, nodev, noexec, noatime (passed to the kernel); fstab's noauto, nofail, _netdev, user(s), x-*, comment=* are ignored."
    )
    var options: [String] = []

    @Flag(help: "Stay attached and log to stderr.")
    var foreground = false

    @Option(help: "memory:// only: preload the store from this local directory.")
    var seed: String?

    @Option(help: "Where the block cache, staging files and the background log live (default: ~/.cache/objmount).")
    var cacheDir: String?

    @Option(
        help: ArgumentHelp(
            "Disk space the block cache may use, e.g. 2G or 500M; 0 turns it off (default: the smaller of 10G and 10% of the cache directory's filesystem; memory:// 0).",
            valueName: "size"))
    var cacheSize: ByteSize?

    @Option(
        help: ArgumentHelp(
            "Memory for data in flight (read-ahead, fetched blocks, upload parts), e.g. 64M (default).",
            valueName: "size"))
    var memoryLimit: ByteSize?

    @Option(
        help: ArgumentHelp(
            "on (default): close returns once the file is safe in the cache directory (journaled) and it is stored in the background; off: close waits until the file is stored.",
            valueName: "on|off"))
    var writeBack: WriteBackMode?

    // `.unconditional`: `--metadata-ttl -5` is a (wrong) value, not an option named `-5`.
    @Option(
        parsing: .unconditional,
        help:
            "How long listings and attributes are trusted, in seconds (default 10; other clients' changes show after at most this)."
    )
    var metadataTTL: Double?

    @Flag(
        help:
            "Show a file's mtime as the listing's Last-Modified (the upload time) and send no HEAD for its mode, owner or mtime metadata: a cold ls -l as fast as the listing; symlinks on S3 show as files."
    )
    var listingMtime = false

    @Option(
        parsing: .unconditional,
        help: ArgumentHelp(
            "The most files and directories the daemon keeps in memory (default 100000, like s3fs's max_stat_cache_size): past it, the least recently used idle ones are forgotten (by the kernel too) and looked up again when next used; 0: no limit.",
            valueName: "count"))
    var maxInodes: Int?

    @Option(
        help: ArgumentHelp(
            "A 16-byte key file (yours, mode 0600 or 0400; `objmount keygen` writes one): files are stored in ks3sdk's client-side encryption format (local_encrypt=True) and objects in it are decrypted.",
            valueName: "path"))
    var encryptionKeyFile: String?

    @Option(help: "error, warning, info or debug.")
    var logLevel: LogLevel = .info

    @Option(
        help: ArgumentHelp(
            "The background log's largest size, e.g. 10M (default): then it becomes objmount.log.1 and a new one starts.",
            valueName: "size"))
    var logMaxSize = ByteSize(bytes: LogFile.defaultCap)

    @Option(
        parsing: .unconditional,
        help:
            "Files above this many MiB are uploaded in parts of this size (multipart / Swift segments); default: parts of 16 MiB above 64 MiB."
    )
    var segmentSize: Int?

    @Option(help: "swift:// auth v1 URL (default: $ST_AUTH).")
    var authURL: String?

    @Option(help: "swift:// user, e.g. account:user (default: $ST_USER).")
    var user: String?

    @Option(help: "swift:// key (default: $ST_KEY; prefer the variable: flags show in the process list).")
    var key: String?

    @OptionGroup var address: S3AddressOptions

    @OptionGroup var config: ConfigOption

    @Option(help: "s3:// / ks3://: storage class of new objects, e.g. STANDARD_IA.")
    var storageClass: String?

    /// Numbers out of range, said with the value given.
    func validate() throws { try Settings(self, MountDefaults()).check() }

    /// The options a mount runs with: the command line's, else its named remote's, else the
    /// defaults.
    struct Settings {
        var segmentSize: Int?
        var cacheSize: ByteSize?
        var memoryLimit: ByteSize
        var writeBack: Bool
        var metadataTTL: Double
        var listingMtime: Bool
        var maxInodes: Int
        var cacheDir: String?
        var logMaxSize: ByteSize
        var encrypted: Bool

        init(_ m: Mount, _ named: MountDefaults) {
            segmentSize = m.segmentSize ?? named.segmentSize
            cacheSize = m.cacheSize ?? named.cacheSize
            memoryLimit = m.memoryLimit ?? named.memoryLimit ?? ByteSize(bytes: 64 << 20)
            writeBack = m.writeBack.map { $0 == .on } ?? named.writeBack ?? true
            metadataTTL = m.metadataTTL ?? named.metadataTTL ?? 10
            listingMtime = m.listingMtime || named.listingMtime == true
            maxInodes = m.maxInodes ?? named.maxInodes ?? 100_000
            cacheDir = m.cacheDir ?? named.cacheDir
            logMaxSize = m.logMaxSize
            encrypted = m.encryptionKeyFile != nil
        }

        func check() throws {
            if let s = segmentSize {
                guard s >= 1 else {
                    throw ValidationError("--segment-size must be a positive number of MiB (got \(s))")
                }
                guard s <= 5120 else { throw ValidationError("--segment-size must be at most 5120 MiB (got \(s))") }
            }
            guard logMaxSize.bytes >= 4096 else {
                throw ValidationError("--log-max-size must be at least 4K (got \(logMaxSize))")
            }
            guard memoryLimit.bytes >= 8 << 20 else {
                throw ValidationError("--memory-limit must be at least 8M (got \(memoryLimit))")
            }
            guard metadataTTL >= 0 else {
                throw ValidationError(
                    "--metadata-ttl must be a non-negative number of seconds (got \(Mount.number(metadataTTL)))")
            }
            guard maxInodes == 0 || maxInodes >= 100 else {
                throw ValidationError("--max-inodes must be 0 (no limit) or at least 100 (got \(maxInodes))")
            }
            if encrypted && listingMtime {
                throw ValidationError(
                    "--listing-mtime cannot be used with --encryption-key-file: a listing does not say a file's plaintext size"
                )
            }
            guard metadataTTL <= 86_400 else {
                throw ValidationError(
                    "--metadata-ttl must be at most 86400 seconds (got \(Mount.number(metadataTTL)))")
            }
        }
    }

    /// `-5` rather than `-5.0`.
    static func number(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x)
    }

    func run() throws {
        let (url, named) = try NamedRemotes.resolve(self.remote, config: config.path)
        var address = self.address
        if named?.pathStyle == true { address.pathStyle = true }
        let storageClass = self.storageClass ?? named?.storageClass
        let settings = Settings(self, named?.mount ?? MountDefaults())
        do { try settings.check() } catch let e as ValidationError {
            throw CLIError("\(e.message)" + (named.map { " (from remote '\($0.name)')" } ?? ""))
        }
        let remote: Remote
        do { remote = try Remote(parsing: url) } catch { throw CLIError(error.description) }
        let mountOptions: MountOptions
        do { mountOptions = try MountOptions(parsing: options) } catch { throw CLIError(error.description) }
        // Read in the first process too, before anything else: a key that cannot be used fails the
        // mount command.
        let encryptionKey = try encryptionKeyFile.map { path throws(CLIError) in
            do { return try KeyFile.load(Paths.absolute(path)) } catch { throw CLIError("\(error)") }
        }
        let mountpoint = Paths.absolute(self.mountpoint)
        try Preflight.check(mountpoint: mountpoint)
        if let seed {
            var st = stat()
            guard stat(seed, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
                throw CLIError("seed directory \(seed) does not exist or is not a directory")
            }
            guard remote.scheme == .memory else { throw CLIError("--seed works with memory:// remotes only") }
        }
        let driver = try DriverSettings.resolve(
            remote, authURL: authURL, user: user, key: key, address: address, storageClass: storageClass)
        let cacheDirectory = Paths.absolute(settings.cacheDir ?? Paths.defaultCacheDirectory)
        guard Paths.makeDirectories(cacheDirectory) else {
            throw CLIError("cannot create cache directory \(cacheDirectory): \(errnoText(errno))")
        }
        if foreground || Paths.environment(Daemon.readyFDVariable) != nil {
            if !foreground {
                // The background daemon: its stdout and stderr are the log startInBackground opened.
                LogFile.rotate(cacheDirectory + "/objmount.log", cap: logMaxSize.bytes)
            }
            try Daemon.serve(
                remote: remote, driver: driver, mountpoint: mountpoint, options: mountOptions, seed: seed,
                cacheDirectory: cacheDirectory,
                cache: CacheSettings(cacheSize: settings.cacheSize?.bytes, memoryLimit: settings.memoryLimit.bytes),
                writeBack: settings.writeBack,
                metadata: MetadataSettings(
                    ttl: settings.metadataTTL, listingMtime: settings.listingMtime, inodeLimit: settings.maxInodes),
                segmentMiB: settings.segmentSize, encryptionKey: encryptionKey,
                logger: Logger(level: logLevel))
        } else {
            // A key given as a flag goes to the daemon through its environment, not its argv
            // (the process list is public).
            var arguments = CommandLine.arguments
            if let i = arguments.firstIndex(of: "--key"), i + 1 < arguments.count {
                setenv("ST_KEY", arguments[i + 1], 1)
                arguments.removeSubrange(i...(i + 1))
            } else if let i = arguments.firstIndex(where: { $0.hasPrefix("--key=") }) {
                setenv("ST_KEY", String(arguments[i].dropFirst(6)), 1)
                arguments.remove(at: i)
            }
            try Daemon.startInBackground(arguments: arguments, cacheDirectory: cacheDirectory, mountpoint: mountpoint)
        }
    }
}

enum WriteBackMode: String, ExpressibleByArgument {
    case on, off
}

struct Sync: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until every file closed on a mount is stored on the server.",
        discussion: """
            With write-back (the default) close returns before the upload ends; this returns once \
            everything closed or fsync'd under PATH (a mount point or a directory in it) is stored, \
            and fails with the first upload error. The same as fsync(2) of the directory.

            Example:
              objmount sync ./mnt
            """)

    @Argument(help: "Mount points or directories inside one.")
    var paths: [String]

    func run() throws {
        for path in paths {
            let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard fd >= 0 else { throw CLIError("\(path): \(errnoText(errno))") }
            defer { close(fd) }
            guard fsync(fd) == 0 else {
                throw CLIError("cannot store what is pending under \(path): \(errnoText(errno))")
            }
        }
    }
}

struct Unmount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Store pending writes, then unmount.",
        discussion: """
            Fails (and leaves the mount alone) while a process still uses it, like umount.

            Example:
              objmount unmount ./mnt
            """)

    @Argument(help: "The mount point.")
    var mountpoint: String

    @Option(help: "Seconds to wait for the daemon to store pending writes and exit.")
    var timeout: Double = 600

    func run() throws {
        let path = Paths.absolute(mountpoint)
        guard let mount = MountTable.current().last(where: { $0.mountpoint == path }) else {
            throw CLIError("\(path) is not mounted")
        }
        guard mount.fsType == "fuse.objmount" else {
            throw CLIError("\(path) is not an objmount mount (it is \(mount.fsType))")
        }
        guard let fusermount = Spawn.which("fusermount3") else {
            throw CLIError("fusermount3 not found; install the fuse3 package")
        }
        let pid = Daemon.readPid(mountpoint: path)
        let (status, err) = try Spawn.run(fusermount, ["fusermount3", "-u", path])
        guard status == 0 else {
            let why = err.split(separator: "\n").first.map { String($0) } ?? "exit status \(status)"
            throw CLIError("cannot unmount \(path): \(why.replacingPrefix("fusermount3: ", with: ""))")
        }
        // The daemon stores pending writes after the kernel lets go; wait for it to finish.
        if let pid {
            var waited = 0.0
            var left = ""
            let progress = Paths.progressFile(for: path)
            var meter = ProgressMeter(terminal: isatty(2) == 1)
            while Daemon.isRunning(pid) && waited < timeout {
                // Files and bytes left, as the daemon counts them each second, with the rate
                // and the time left: a line rewritten in place on a terminal, else one a second.
                if waited >= 1 && Int(waited * 20) % 20 == 0 {
                    left = Self.pending(in: progress) ?? left
                    writeStderr(meter.line(for: path, Self.pendingCounts(in: progress), at: waited))
                }
                usleep(50_000)
                waited += 0.05
            }
            writeStderr(meter.end())
            if Daemon.isRunning(pid) {
                left = Self.pending(in: progress) ?? left
                throw CLIError(
                    "unmounted \(path), but its daemon (pid \(pid)) is still storing "
                        + (left.isEmpty ? "pending writes" : left) + "; it goes on in the background")
            }
        }
        // What the daemon could not store (it kept the data locally and said where).
        let report = Paths.unsavedReport(for: path)
        let fd = open(report, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            let text = Spawn.readAll(fd)
            close(fd)
            unlink(report)
            writeStderr(text.split(separator: "\n").map { "objmount: \($0)\n" }.joined())
            throw CLIError("unmounted \(path), but some data could not be stored (kept locally, see above)")
        }
    }
}

extension Unmount {
    /// "N file(s), SIZE" from the daemon's progress file, if it is there.
    static func pending(in progressFile: String) -> String? {
        pendingCounts(in: progressFile).map { "\($0.files) file(s), \(ByteSize(bytes: $0.bytes).approximate)" }
    }

    /// Files and bytes left, from the daemon's progress file.
    static func pendingCounts(in progressFile: String) -> (files: Int, bytes: Int64)? {
        let fd = open(progressFile, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let fields = Spawn.readAll(fd).split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let files = Int(fields[0]), let bytes = Int64(fields[1]) else { return nil }
        return (files, bytes)
    }
}

extension String {
    func replacingPrefix(_ prefix: String, with replacement: String) -> String {
        hasPrefix(prefix) ? replacement + dropFirst(prefix.count) : self
    }
}

/// Checks that can fail before anything is started, each with one clear line.
enum Preflight {
    static func check(mountpoint: String) throws(CLIError) {
        if let m = MountTable.current().last(where: { $0.mountpoint == mountpoint }), m.fsType.hasPrefix("fuse") {
            throw CLIError("\(mountpoint) is already mounted (\(m.source)); run: objmount unmount \(mountpoint)")
        }
        var st = stat()
        guard stat(mountpoint, &st) == 0 else {
            throw CLIError("mountpoint \(mountpoint) does not exist: \(errnoText(errno))")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw CLIError("mountpoint \(mountpoint) is not a directory") }
        guard Paths.isDirectoryEmpty(mountpoint) == true else {
            throw CLIError("mountpoint \(mountpoint) is not empty")
        }
        guard access("/dev/fuse", F_OK) == 0 else {
            throw CLIError("/dev/fuse is missing: load the fuse module (modprobe fuse) or run where FUSE is available")
        }
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw CLIError("no permission to open /dev/fuse (run as root or make it mode 0666)")
        }
        guard Spawn.which("fusermount3") != nil else {
            throw CLIError("fusermount3 not found; install the fuse3 package")
        }
    }
}

/// The lines `objmount unmount` shows while the daemon stores what is pending: files and bytes
/// left, the rate since the first count, and the time left at that rate.
struct ProgressMeter {
    let terminal: Bool
    private var first: (seconds: Double, bytes: Int64)?
    private var shown = false

    init(terminal: Bool) { self.terminal = terminal }

    mutating func line(for path: String, _ counts: (files: Int, bytes: Int64)?, at seconds: Double) -> String {
        var text = "waiting for pending uploads to finish"
        if let counts {
            text = "storing \(counts.files) file(s), \(ByteSize(bytes: counts.bytes).approximate) left"
            if let first, seconds > first.seconds, first.bytes > counts.bytes {
                let rate = Double(first.bytes - counts.bytes) / (seconds - first.seconds)
                text +=
                    ", \(ByteSize(bytes: Int64(rate)).approximate)/s, about \(Int((Double(counts.bytes) / rate).rounded(.up))) s to go"
            } else if first == nil {
                first = (seconds, counts.bytes)
            }
        }
        shown = true
        return terminal ? "\r\u{1B}[Kobjmount: \(path): \(text)" : "objmount: \(path): \(text)\n"
    }

    /// Ends the line being rewritten on a terminal.
    func end() -> String { terminal && shown ? "\n" : "" }
}
