// `--seed <dir>`: preload a memory:// store from a local tree, with the metadata a file written
// through the mount would have (mtime, mode), and a directory marker for every directory.

import ObjectFS
import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

enum Seeder {
    struct Counts {
        var files = 0
        var directories = 0
        var skipped: [String] = []
    }

    static func seed(_ storage: any ObjectStorage, from root: String, prefix: String) async throws -> Counts {
        var counts = Counts()
        try await walk(storage, path: root, key: KeyPath.normalizedPrefix(prefix), counts: &counts)
        return counts
    }

    private static func walk(_ storage: any ObjectStorage, path: String, key: String, counts: inout Counts) async throws
    {
        guard let d = opendir(path) else { throw CLIError("cannot read seed directory \(path): \(errnoText(errno))") }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(d)
        for name in names.sorted() {
            let full = path + "/" + name
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            let metadata = PosixMetadata.encode(
                mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec)),
                mode: st.st_mode)
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                _ = try await storage.put(
                    key + name + "/", payload: .bytes([]),
                    options: PutOptions(contentType: KeyPath.s3DirectoryContentType))
                counts.directories += 1
                try await walk(storage, path: full, key: key + name + "/", counts: &counts)
            case S_IFREG:
                _ = try await storage.put(
                    key + name, payload: .file(path: full, offset: 0, length: Int64(st.st_size)),
                    options: PutOptions(metadata: metadata))
                counts.files += 1
            default:
                counts.skipped.append(full)
            }
        }
    }
}
