// KeyPath: the rules that turn object keys into paths and back (doc/SEMANTICS.md, "Keys and
// paths"). They are pure functions so that every example in the document is a unit test.
//
// - The delimiter is "/". The mount shows the keys under its prefix.
// - A directory exists when a listing of `dir/` returns anything (implicit directory), or when a
//   marker exists: the object `dir/` (S3 convention) or a 0-byte object `dir` whose content type
//   is `application/directory` (Swift/Hubic convention).
// - A key with a segment that cannot be a file name (empty, ".", "..", over 255 bytes, or holding
//   a NUL byte) is not shown.
// - When a file `a` and a directory `a/` both exist, the directory wins and the file is hidden.

import ObjectStorage

public enum KeyPath {
    public static let delimiter = "/"
    public static let swiftDirectoryContentType = "application/directory"
    public static let s3DirectoryContentType = "application/x-directory"
    public static let maximumNameLength = 255
    public static let maximumKeyLength = 1024

    /// Whether `name` can be one path segment.
    public static func isRepresentable(_ name: some StringProtocol) -> Bool {
        !name.isEmpty && name != "." && name != ".." && name.utf8.count <= maximumNameLength
            && !name.utf8.contains(0) && !name.utf8.contains(UInt8(ascii: "/"))
    }

    /// The mount prefix in canonical form: empty, or without a leading and with one trailing "/".
    public static func normalizedPrefix(_ prefix: String) -> String {
        let parts = prefix.split(separator: "/", omittingEmptySubsequences: true)
        return parts.isEmpty ? "" : parts.joined(separator: "/") + "/"
    }

    /// Whether an object is a Swift-style directory marker (`dir` + application/directory).
    public static func isDirectoryMarker(_ info: ObjectInfo) -> Bool {
        info.key.hasSuffix("/")
            || (info.size == 0 && info.contentType?.lowercased().hasPrefix(swiftDirectoryContentType) == true)
    }

    /// A directory's children as one listing page (delimiter "/") under `directoryPrefix`
    /// shows them: unrepresentable names dropped, a directory shadowing a same-named file,
    /// the directory's own marker skipped. Sorted by name.
    public static func children(of directoryPrefix: String, in page: ListPage) -> [(
        name: String, kind: FileKind, info: ObjectInfo?
    )] {
        // Keyed by bytes: two spellings of one text are two entries (ByteString).
        var dirs: [ByteString: ObjectInfo?] = [:]
        var files: [ByteString: ObjectInfo] = [:]
        for p in page.commonPrefixes {
            guard p.utf8.starts(with: directoryPrefix.utf8) else { continue }
            var name = String(p.utf8.dropFirst(directoryPrefix.utf8.count))!
            guard name.hasSuffix("/") else { continue }
            name.removeLast()
            if isRepresentable(name) { dirs[ByteString(name)] = .some(nil) }
        }
        for o in page.objects {
            guard o.key.utf8.starts(with: directoryPrefix.utf8), o.key != directoryPrefix else {
                continue
            }
            var name = String(o.key.utf8.dropFirst(directoryPrefix.utf8.count))!
            if name.hasSuffix("/") {
                // `sub/` as an object in a listing without delimiter roll-up: a marker.
                name.removeLast()
                if isRepresentable(name) { dirs[ByteString(name)] = .some(nil) }
                continue
            }
            guard isRepresentable(name) else { continue }
            if isDirectoryMarker(o) {
                dirs[ByteString(name)] = .some(o)
            } else {
                files[ByteString(name)] = o
            }
        }
        var out: [(name: String, kind: FileKind, info: ObjectInfo?)] = []
        for (name, info) in dirs { out.append((name.string, .directory, info)) }
        for (name, info) in files where dirs[name] == nil { out.append((name.string, .file, info)) }
        out.sort { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        return out
    }
}
