#if canImport(Glibc)
    import Glibc
#endif

/// Lines of /proc/self/mountinfo: which paths are mounted and by what. `mountpoint -q` is not
/// reliable on a dead FUSE mount; this is (FUSE-NOTES.md gotcha 4).
public struct MountTable: Sendable {
    public struct Mount: Sendable, Hashable {
        public var device: String
        public var mountpoint: String
        public var fsType: String
        public var source: String
    }

    public var mounts: [Mount]

    public static func current() -> [Mount] {
        guard let f = fopen("/proc/self/mountinfo", "r") else { return [] }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return parse(String(decoding: bytes, as: UTF8.self))
    }

    /// Parses mountinfo text (proc(5)): `id parent major:minor root mountpoint opts ... - type source superopts`.
    public static func parse(_ text: String) -> [Mount] {
        var out: [Mount] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            out.append(
                Mount(
                    device: String(fields[2]), mountpoint: unescape(fields[4]),
                    fsType: String(fields[dash + 1]), source: unescape(fields[dash + 2])))
        }
        return out
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo octal.
    static func unescape(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 3 < u.count,
                let v = UInt8(String(decoding: u[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(v)
                i += 4
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
