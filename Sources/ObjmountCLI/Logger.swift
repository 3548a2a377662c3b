import ArgumentParser
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public enum LogLevel: String, Sendable, CaseIterable, Comparable, ExpressibleByArgument {
    case error, warning, info, debug

    var rank: Int { LogLevel.allCases.firstIndex(of: self)! }
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rank < b.rank }
}

/// Plain lines on stderr (a log file in the background). Messages carry keys and errno, never
/// credentials: drivers keep secrets out of the errors they throw.
public struct Logger: Sendable {
    public var level: LogLevel

    public init(level: LogLevel) { self.level = level }

    public func log(_ l: LogLevel, _ message: @autoclosure () -> String) {
        guard l <= level else { return }
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        var tm = tm()
        var secs = t.tv_sec
        gmtime_r(&secs, &tm)
        let stamp =
            "\(tm.tm_year + 1900)-\(pad(tm.tm_mon + 1))-\(pad(tm.tm_mday))T\(pad(tm.tm_hour)):\(pad(tm.tm_min)):\(pad(tm.tm_sec))Z"
        writeStderr("\(stamp) \(l.rawValue): \(message())\n")
        LogFile.rotateIfFull()
    }

    public func error(_ m: @autoclosure () -> String) { log(.error, m()) }
    public func warning(_ m: @autoclosure () -> String) { log(.warning, m()) }
    public func info(_ m: @autoclosure () -> String) { log(.info, m()) }
    public func debug(_ m: @autoclosure () -> String) { log(.debug, m()) }

    private func pad(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
}

/// The background daemon's log (its stderr and stdout): once it passes `cap` bytes it becomes
/// `<path>.1` (replacing the one before) and a new file starts, so a mount that runs for months
/// keeps at most twice the cap.
enum LogFile {
    static let defaultCap: Int64 = 10 << 20
    private static let state = Mutex<(path: String, cap: Int64)?>(nil)

    static func rotate(_ path: String, cap: Int64 = defaultCap) { state.withLock { $0 = (path, cap) } }

    static func rotateIfFull() {
        state.withLock { state in
            guard let (path, cap) = state else { return }
            var st = stat()
            guard fstat(2, &st) == 0, Int64(st.st_size) > cap else { return }
            guard rename(path, path + ".1") == 0 else { return }
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return }
            dup2(fd, 1)
            dup2(fd, 2)
            close(fd)
        }
    }
}

func writeStderr(_ text: String) {
    writeAll(2, text)
}

func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        done += n
    }
    bytes.removeAll()
}
