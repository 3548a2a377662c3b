// `-o` mount options as users know them from fstab and other FUSE filesystems.

public struct MountOptions: Sendable, Hashable {
    public var allowOther = false
    public var readOnly = false
    public var uid: UInt32?
    public var gid: UInt32?
    public var umask: UInt32?
    /// Mount flags the kernel applies (`nosuid`, `nodev`, `noexec`, `noatime`, …), handed to
    /// libfuse as they were given.
    public var kernelFlags: [String] = []

    /// Flags libfuse passes to the kernel's mount(2).
    static let kernelFlagNames: Set<String> = [
        "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "dirsync", "noatime", "nodiratime",
    ]
    /// Options that are mount(8)'s, systemd's or fstab's business, accepted and ignored so that
    /// an fstab line or a mount unit works: `x-*` and `comment=*` too. atime options other than
    /// `noatime` change nothing: objmount does not keep access times.
    static let ignoredNames: Set<String> = [
        "defaults", "auto", "noauto", "_netdev", "nofail", "user", "users", "nouser", "owner", "group",
        "atime", "relatime", "norelatime", "strictatime", "nostrictatime", "diratime", "lazytime", "nolazytime",
    ]

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public init() {}

    /// Parses comma-separated lists such as `allow_other,ro,uid=1000,umask=022`; several `-o`
    /// values add up. Unknown options are an error: a silently ignored option is a surprise later.
    public init(parsing lists: [String]) throws(ParseError) {
        for list in lists {
            for item in list.split(separator: ",", omittingEmptySubsequences: true) {
                let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0])
                let value = kv.count == 2 ? String(kv[1]) : nil
                if value == nil && Self.kernelFlagNames.contains(key) {
                    kernelFlags.removeAll { $0 == key }
                    kernelFlags.append(key)
                    continue
                }
                if (value == nil && Self.ignoredNames.contains(key)) || key.hasPrefix("x-") || key == "comment" {
                    continue
                }
                switch (key, value) {
                case ("allow_other", nil): allowOther = true
                case ("ro", nil): readOnly = true
                case ("rw", nil): readOnly = false
                case ("uid", let v?): uid = try Self.number(v, key, radix: 10)
                case ("gid", let v?): gid = try Self.number(v, key, radix: 10)
                case ("umask", let v?):
                    let m = try Self.number(v, key, radix: 8)
                    guard m <= 0o777 else { throw ParseError(description: "umask must be at most 777, got \(v)") }
                    umask = m
                case ("allow_other", _), ("ro", _), ("rw", _):
                    throw ParseError(description: "mount option '\(key)' takes no value")
                case ("uid", nil), ("gid", nil), ("umask", nil):
                    throw ParseError(
                        description:
                            "mount option '\(key)' needs a value, e.g. \(key)=\(key == "umask" ? "022" : "1000")")
                default:
                    throw ParseError(
                        description:
                            "unknown mount option '\(item)' (known: allow_other, ro, rw, uid=N, gid=N, umask=NNN, "
                            + "nosuid, nodev, noexec, noatime and the like; fstab's noauto, nofail, _netdev, "
                            + "user(s), x-*, comment=* are ignored)")
                }
            }
        }
    }

    static func number(_ text: String, _ key: String, radix: Int) throws(ParseError) -> UInt32 {
        guard let n = UInt32(text, radix: radix) else {
            throw ParseError(
                description: "mount option \(key)=\(text) is not a valid \(radix == 8 ? "octal " : "")number")
        }
        return n
    }
}
