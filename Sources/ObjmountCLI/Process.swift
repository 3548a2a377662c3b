// Starting and waiting for processes without fork(): a running Swift process must not fork
// (its other threads would be gone in the child). posix_spawn only.

#if canImport(Glibc)
    import Glibc
#endif

enum Spawn {
    /// glibc's POSIX_SPAWN_SETSID (needs _GNU_SOURCE, which the Glibc module does not see).
    static let setsidFlag: Int16 = 0x80

    /// Starts `path` with `arguments` (argv[0] included). `fds` maps child descriptors to
    /// descriptors of this process; every other descriptor is closed in the child by CLOEXEC.
    static func start(_ path: String, _ arguments: [String], fds: [Int32: Int32], newSession: Bool) throws(CLIError)
        -> pid_t
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (child, parent) in fds.sorted(by: { $0.key < $1.key }) {
            posix_spawn_file_actions_adddup2(&actions, parent, child)
        }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        if newSession { posix_spawnattr_setflags(&attr, setsidFlag) }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attr, &argv, environ)
        guard rc == 0 else { throw CLIError("cannot start \(path): \(errnoText(rc))") }
        return pid
    }

    /// A pipe whose ends are closed on exec (pipe2 needs _GNU_SOURCE).
    static func makePipe(_ p: inout [Int32]) -> Bool {
        guard pipe(&p) == 0 else { return false }
        _ = fcntl(p[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(p[1], F_SETFD, FD_CLOEXEC)
        return true
    }

    /// Runs a command to completion; returns its exit status and what it wrote on stderr.
    static func run(_ path: String, _ arguments: [String]) throws(CLIError) -> (status: Int32, stderr: String) {
        var p: [Int32] = [0, 0]
        guard makePipe(&p) else { throw CLIError("pipe: \(errnoText(errno))") }
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        let pid: pid_t
        do {
            pid = try start(path, arguments, fds: [0: devnull, 1: devnull, 2: p[1]], newSession: false)
        } catch {
            close(p[0]); close(p[1]); close(devnull)
            throw error
        }
        close(p[1])
        close(devnull)
        let text = readAll(p[0])
        close(p[0])
        return (wait(pid), text)
    }

    static func readAll(_ fd: Int32) -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes up to the first newline (or EOF).
    static func readLine(_ fd: Int32) -> String {
        var out: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || byte == UInt8(ascii: "\n") { break }
            out.append(byte)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Waits for `pid`; returns its exit code (128 + signal if it was killed).
    static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }

    /// The first executable called `name` on PATH.
    static func which(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/bin"] {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// A failure the user can act on: printed as one line, `objmount: <message>`.
public struct CLIError: Error, CustomStringConvertible {
    public var description: String
    public var exitCode: Int32
    public init(_ description: String, exitCode: Int32 = 1) {
        self.description = description
        self.exitCode = exitCode
    }
}

func errnoText(_ code: Int32) -> String {
    guard let p = strerror(code) else { return "errno \(code)" }
    return String(cString: p)
}
