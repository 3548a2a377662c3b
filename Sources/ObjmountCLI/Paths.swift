import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

enum Paths {
    static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `path` made absolute and normalized without touching the filesystem (a dead mount point
    /// cannot be stat'ed, so realpath(3) fails on it).
    static func absolute(_ path: String) -> String {
        var base = ""
        if !path.hasPrefix("/") {
            var buf = [CChar](repeating: 0, count: Int(PATH_MAX))
            if getcwd(&buf, buf.count) != nil {
                base = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        var parts: [Substring] = []
        for seg in (base + "/" + path).split(separator: "/") {
            if seg == "." { continue }
            if seg == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(seg)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// `~/.cache/objmount` (or $XDG_CACHE_HOME/objmount).
    static var defaultCacheDirectory: String {
        if let x = environment("XDG_CACHE_HOME") { return x + "/objmount" }
        return home + "/.cache/objmount"
    }

    /// `$HOME`, else the user's home in the password database: a mount run by systemd or
    /// mount(8) may have no HOME, and still finds `~/.aws` and the cache directory.
    static var home: String {
        if let h = environment("HOME"), !h.isEmpty { return h }
        if let entry = getpwuid(getuid()), let dir = entry.pointee.pw_dir, let path = String(validatingCString: dir),
            !path.isEmpty
        {
            return path
        }
        return "/tmp"
    }

    /// Where a running mount keeps its pid file: found again by `objmount unmount`.
    static var runtimeDirectory: String {
        if getuid() == 0 { return "/run/objmount" }
        if let x = environment("XDG_RUNTIME_DIR") { return x + "/objmount" }
        return "/tmp/objmount-\(getuid())"
    }

    static func pidFile(for mountpoint: String) -> String {
        var name = ""
        for b in mountpoint.utf8 {
            let c = Character(UnicodeScalar(b))
            if c.isLetter || c.isNumber || c == "-" || c == "." || c == "_" {
                name.append(c)
            } else {
                name += "%" + String(b, radix: 16, uppercase: true)
            }
        }
        return runtimeDirectory + "/" + name + ".pid"
    }

    /// What the daemon of `mountpoint` could not store at exit, for `objmount unmount`.
    static func unsavedReport(for mountpoint: String) -> String {
        String(pidFile(for: mountpoint).dropLast(4)) + ".unsaved"
    }

    /// The daemon's progress at exit — "files bytes" left to store — for `objmount unmount`.
    static func progressFile(for mountpoint: String) -> String {
        String(pidFile(for: mountpoint).dropLast(4)) + ".progress"
    }

    /// Where one daemon keeps the data it could not store: `<cache-dir>/unsaved/<UTC time>-<pid>`.
    static func unsavedDirectory(under cacheDirectory: String) -> String {
        "\(cacheDirectory)/unsaved/\(Timestamp.now().compactUTC)-\(getpid())"
    }

    /// Creates `path` and its parents with `mode`; true if it exists afterwards.
    @discardableResult
    static func makeDirectories(_ path: String, mode: mode_t = 0o700) -> Bool {
        var cur = ""
        for seg in path.split(separator: "/") {
            cur += "/" + seg
            if mkdir(cur, mode) != 0 && errno != EEXIST { return false }
        }
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func isDirectoryEmpty(_ path: String) -> Bool? {
        guard let d = opendir(path) else { return nil }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { return false }
        }
        return true
    }
}
