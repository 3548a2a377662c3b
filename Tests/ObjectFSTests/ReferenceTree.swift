// The reference model of the property tests: the tree a bucket must show, computed from a flat
// key list with the same KeyPath.children rules the filesystem uses. Test-only.

import ObjectFS
import ObjectStorage

extension KeyPath {
    /// Every visible path of a bucket, as the filesystem must show it: `dirs` and `files`
    /// relative to the mount prefix. This is the reference model of the property tests.
    static func tree(of keys: [ObjectInfo], prefix: String) -> (
        directories: Set<String>, files: Set<String>
    ) {
        var dirs: Set<String> = []
        var files: Set<String> = []
        // Build per-directory listings from the flat key list.
        func visit(_ dirPath: String) {
            let dirPrefix = prefix + (dirPath.isEmpty ? "" : dirPath + "/")
            let page = simulatedListing(keys: keys, prefix: dirPrefix)
            for child in children(of: dirPrefix, in: page) {
                let path = dirPath.isEmpty ? child.name : dirPath + "/" + child.name
                switch child.kind {
                case .directory:
                    dirs.insert(path)
                    visit(path)
                case .file, .symlink:
                    files.insert(path)
                }
            }
        }
        visit("")
        return (dirs, files)
    }

    /// What a server returns for `list(prefix:, delimiter: "/")` over `keys`.
    static func simulatedListing(keys: [ObjectInfo], prefix: String) -> ListPage {
        var page = ListPage(objects: [], commonPrefixes: [], continuation: nil)
        var seen: Set<String> = []
        for o in keys.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) })
        where o.key.utf8.starts(with: prefix.utf8) {
            let rest = String(o.key.utf8.dropFirst(prefix.utf8.count))!
            if let slash = rest.firstIndex(of: "/") {
                let common = prefix + rest[...slash]
                if seen.insert(common).inserted { page.commonPrefixes.append(common) }
            } else {
                page.objects.append(o)
            }
        }
        return page
    }
}
