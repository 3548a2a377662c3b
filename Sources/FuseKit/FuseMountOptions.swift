/// How a session mounts: the `-o` options libfuse and the kernel see, and the cache timeouts.
public struct FuseMountOptions: Sendable, Hashable {
    /// Shown as the source in /proc/mounts and `df` (`objmount:memory://b`).
    public var fsName: String
    public var allowOther = false
    public var readOnly = false
    /// A helper unmounts when the daemon dies, so a kill never leaves a dead mount.
    public var autoUnmount = true
    public var entryTimeout: Double = 1
    public var attributeTimeout: Double = 1
    /// How long the kernel may cache "no such file" (0: never).
    public var negativeTimeout: Double = 1
    /// Largest WRITE request (1 MiB: libfuse sets max_pages itself).
    public var maxWrite = 1 << 20
    /// Raise the mount's bdi read-ahead so READs arrive as large requests (0: leave it).
    public var readAheadKiB = 1024
    public var readdirPlus = true
    /// libfuse's own request trace on stderr.
    public var debug = false
    /// Kernel mount flags given by the user (`nosuid`, `nodev`, `noexec`, `noatime`, …).
    public var kernelFlags: [String] = []

    public init(fsName: String) {
        self.fsName = fsName
    }

    /// The `-o` list. `allow_other` always comes with `default_permissions`: the kernel then
    /// checks the mode bits, otherwise any user could read any file (FUSE-NOTES.md gotcha 6).
    public var optionString: String {
        var o = ["fsname=\(Self.escape(fsName))", "subtype=objmount", "default_permissions"]
        if allowOther { o.append("allow_other") }
        if readOnly { o.append("ro") }
        if autoUnmount { o.append("auto_unmount") }
        o += kernelFlags
        o.append("max_read=\(maxWrite)")
        return o.joined(separator: ",")
    }

    public var arguments: [String] {
        ["objmount", "-o", optionString] + (debug ? ["-d"] : [])
    }

    /// libfuse splits options at unescaped commas; a backslash escapes.
    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s {
            if ch == "," || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out
    }
}
