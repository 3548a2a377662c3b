// Unsaved data: what the filesystem still holds for files it could not store when it goes away
// (the server down or refusing at unmount), or must not (a file a program still has open for
// writing when the daemon is stopped: storing it would replace the object by a prefix). Their staging files would be removed with the
// filesystem; instead each is synced and hard-linked into a directory the user is told about,
// with an index of the keys they belong to. Nothing a program wrote is dropped silently.

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// A file whose data could not be stored, kept in a local directory.
    public struct KeptFile: Sendable, Hashable {
        /// The object key the data was written for.
        public let key: String
        public let size: Int64
        /// Where its bytes are now.
        public let path: String
        /// A program still had it open for writing: what it wrote so far, not a closed file.
        public let openForWriting: Bool
        /// The file's first bytes were not downloaded (it was being extended): they are those of
        /// the object stored at `key`, and a hole in the kept file.
        public var storedPrefix: Int64 = 0
        /// Its bytes could not be put in `directory` (a full disk), but the journal record
        /// that carries them (`path`) is kept: the next mount of the remote stores the file.
        public var inJournal = false
    }

    /// Keeps the data of every file not stored yet (what `flushAll` could not upload) in
    /// `directory` (which must exist): each staging file as `NNNN-<name>`, and `INDEX` lists
    /// "file TAB key TAB size" a line each (with "TAB first N bytes on the server" for a file
    /// being extended, whose first N bytes the kept file lacks). Returns what was kept, and the keys of files that
    /// could not be (their reason logged by the caller).
    public func keepUnsaved(in directory: String) -> (kept: [KeptFile], failed: [String]) {
        let pending = nodes.values.filter { $0.dirty && $0.parent != nil && $0.staging != nil }
            .map { (key: fileKey($0), staging: $0.staging!, open: $0.writers > 0) }
            .sorted { $0.key < $1.key }
        guard !pending.isEmpty else { return ([], []) }
        var kept: [KeptFile] = []
        var failed: [String] = []
        var index = ""
        for (n, file) in pending.enumerated() {
            let number = String(n + 1)
            let name = String(repeating: "0", count: max(0, 4 - number.count)) + number + "-" + Self.safeName(file.key)
            let path = directory + "/" + name
            guard (try? file.staging.sync()) != nil, Glibc.link(file.staging.path, path) == 0 else {
                // (A file written since its seal is a copy under a name no record has.)
                if let journal, journal.carriesBytes(of: file.staging.name) {
                    kept.append(
                        KeptFile(
                            key: file.key, size: file.staging.size, path: journal.directory + "/" + journal.name,
                            openForWriting: false, inJournal: true))
                } else {
                    failed.append(file.key)
                }
                continue
            }
            let prefix = file.staging.storedPrefix
            kept.append(
                KeptFile(
                    key: file.key, size: file.staging.size, path: path, openForWriting: file.open, storedPrefix: prefix)
            )
            index += "\(name)\t\(file.key)\t\(file.staging.size)"
            index += prefix > 0 ? "\tfirst \(prefix) bytes on the server\n" : "\n"
        }
        if !kept.isEmpty {
            let fd = Glibc.open(directory + "/INDEX", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            if fd >= 0 {
                _ = Array(index.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                Glibc.fsync(fd)
                Glibc.close(fd)
            }
        }
        return (kept, failed)
    }

    /// The last segment of a key as a file name: no `/`, no leading dot, at most 100 bytes.
    static func safeName(_ key: String) -> String {
        let last = key.split(separator: "/").last.map(String.init) ?? "file"
        var out = ""
        for c in last where c != "\u{0}" {
            if out.utf8.count + String(c).utf8.count > 100 { break }
            out.append(c)
        }
        if out.hasPrefix(".") { out = "_" + out.dropFirst() }
        return out.isEmpty ? "file" : out
    }
}
