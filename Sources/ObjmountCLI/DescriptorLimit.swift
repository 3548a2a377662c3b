// DescriptorLimit: the daemon's limit on open files, raised at start for the block cache.

#if canImport(Glibc)
    import Glibc
#endif

enum DescriptorLimit {
    /// Raises the soft limit on open files to the hard one (at most 65,536): the block cache
    /// keeps a quarter of it open for reads, and Debian's soft default of 1,024 would leave it 256.
    /// Called before the filesystem is built.
    static func raise() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = min(limit.rlim_max, 65_536)
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = wanted
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
