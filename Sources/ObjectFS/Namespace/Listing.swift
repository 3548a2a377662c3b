// Listing: an open directory. A fresh listing is served from the inode table; otherwise the
// server's pages are asked one at a time as `readdir` reaches them, so that the first entries
// go out after one round trip and what a handle holds is one page, whatever the directory's
// size. The last page ends the listing: what it did not show is gone (unless held here), and
// what this mount holds but the server does not show yet comes last.

import ObjectStorage

#if canImport(Glibc)
    import Glibc
#endif

extension ObjectFS {
    /// An open directory: `entries` are the ones from offset `base` on, made at `madeAt`.
    final class DirectoryHandle {
        let dir: InodeNumber
        var entries: [DirectoryEntry] = []
        var base = 0
        var madeAt: Int64 = 0
        /// The listing in progress, while pages are left to ask.
        var listing: Listing?
        /// The next page, asked as soon as the one before came (while the kernel takes that
        /// one's entries), with the continuation it was asked with.
        var ahead: (continuation: String, page: Task<ListPage, any Error>)?

        init(dir: InodeNumber) { self.dir = dir }

        func dropAhead() {
            ahead?.page.cancel()
            ahead = nil
        }
    }

    struct Listing {
        let prefix: String
        /// When the first page was asked: what a page shows is at least this recent.
        let asked: Int64
        var continuation: String?
    }

    public func opendir(_ ino: InodeNumber) async throws(FSError) -> UInt64 {
        let dir = try directory(ino)
        let handle = DirectoryHandle(dir: ino)
        // The first page is asked here: a server that fails says so to opendir.
        try await startListing(handle, dir)
        let fh = newHandleNumber()
        directoryHandles[fh] = handle
        return fh
    }

    /// Entries from index `offset` on (offset 0 is "."), at most `readdirBatch` of them (empty
    /// only at the end); an entry's offset for the next call is its index + 1.
    public func readdir(_ fh: UInt64, offset: Int) async throws(FSError) -> ArraySlice<DirectoryEntry> {
        guard let handle = directoryHandles[fh] else { throw FSError(EBADF, "bad directory handle") }
        let offset = max(0, offset)
        if offset < handle.base {
            // A rewind past the page held: the listing starts over.
            try await startListing(handle, try directory(handle.dir))
        }
        while offset >= handle.base + handle.entries.count, handle.listing != nil {
            try await nextPage(handle, try directory(handle.dir))
        }
        // A batch, not the rest: the kernel takes what fits in its buffer and asks again, and
        // each call copies what it returns (a directory of n entries read a few at a time must
        // not cost n² copies).
        let start = min(offset - handle.base, handle.entries.count)
        var entries = handle.entries[start..<min(handle.entries.count, start + Self.readdirBatch)]
        // The entries age: what is left of each one's validity is less by that age.
        let age = Double(now - handle.madeAt) / 1e9
        for i in entries.indices {
            if age > 0 { entries[i].attributes.trustedFor = max(0, entries[i].attributes.trustedFor - age) }
            // An entry whose node the inode limit dropped since its page came goes out as a
            // name only: the kernel looks it up before using it (InodeLimit.swift).
            if let n = nodes[entries[i].ino] {
                n.referenced = true
            } else if entries[i].name != "." && entries[i].name != ".." {
                entries[i].kindKnown = false
                entries[i].attributesComplete = false
            }
        }
        return entries
    }

    /// Most entries one `readdir` call returns.
    public static let readdirBatch = 1024

    public func releasedir(_ fh: UInt64) {
        directoryHandles.removeValue(forKey: fh)?.dropAhead()
    }

    /// Names of a directory (without "." and ".."), for tests and tools.
    public func list(_ ino: InodeNumber) async throws(FSError) -> [DirectoryEntry] {
        let fh = try await opendir(ino)
        defer { releasedir(fh) }
        var all: [DirectoryEntry] = []
        while true {
            let batch = try await readdir(fh, offset: 2 + all.count)
            if batch.isEmpty { return all }
            all += batch
        }
    }

    /// "." and "..", then the children from the inode table (listing fresh) or the listing's
    /// first page.
    private func startListing(_ handle: DirectoryHandle, _ dir: Node) async throws(FSError) {
        handle.dropAhead()
        handle.base = 0
        handle.madeAt = now
        handle.entries = [
            DirectoryEntry(name: ".", attributes: attributes(dir)),
            DirectoryEntry(name: "..", attributes: attributes(dir.parent.flatMap { nodes[$0] } ?? dir)),
        ]
        if dir.listedUntil >= now {
            handle.listing = nil
            for name in dir.children.names.sortedInByteOrder() {
                if let child = nodes[dir.children[name]!] { handle.entries.append(entry(name, child)) }
            }
            return
        }
        // A stamp of its own even on a coarse clock: a pass knows which names it showed.
        lastListingAsked = max(now, lastListingAsked + 1)
        // What this mount removed after the listing was asked, or up to one TTL before it (a
        // server may update its listings a little later: Swift's container updates can go
        // asynchronous under load), stays removed; older removals are forgotten.
        if !dir.removed.isEmpty { dir.removed.removeAll { $0 < lastListingAsked - ttl } }
        handle.listing = Listing(prefix: directoryPrefix(dir), asked: lastListingAsked, continuation: nil)
        try await nextPage(handle, dir, keeping: true)
    }

    /// Asks the listing's next page; its entries replace the handle's (or follow them:
    /// `keeping`). The last page ends the listing.
    private func nextPage(_ handle: DirectoryHandle, _ dir: Node, keeping: Bool = false) async throws(FSError) {
        guard var listing = handle.listing else { return }
        let page: ListPage
        do {
            if let ahead = handle.ahead, ahead.continuation == listing.continuation {
                handle.ahead = nil
                page = try await ahead.page.value
            } else {
                page = try await Self.page(of: listing.prefix, after: listing.continuation, in: storage)
            }
        } catch {
            throw FSError.from(error, "list \(listing.prefix)")
        }
        if !keeping {
            handle.base += handle.entries.count
            handle.entries = []
        }
        handle.madeAt = now
        guard directoryPrefix(dir) == listing.prefix, handle.listing?.asked == listing.asked else {
            // Renamed meanwhile (or started over): what was listed is all this pass shows.
            handle.listing = nil
            return
        }
        for child in KeyPath.children(of: listing.prefix, in: page) where dir.removed[child.name] == nil {
            // Once per pass, also when a later page shows the name again: a directory `a/`
            // comes after a file `a` it shadows (it replaces the file, which the kernel is
            // told to forget).
            let again = dir.children[child.name].flatMap { nodes[$0] }?.listedAt == listing.asked
            if again && child.kind != .directory { continue }
            let n = upsert(dir, name: child.name, kind: child.kind, info: child.info)
            n.listedAt = max(n.listedAt, listing.asked)
            if !again { handle.entries.append(entry(child.name, n)) }
        }
        listing.continuation = page.continuation
        handle.listing = listing
        guard let next = page.continuation else { return finishListing(handle, dir, listing) }
        let (storage, prefix) = (self.storage, listing.prefix)
        handle.ahead = (next, Task { try await Self.page(of: prefix, after: next, in: storage) })
    }

    /// One page of a directory's listing (delimiter "/") after `continuation`.
    private static func page(of prefix: String, after continuation: String?, in storage: any ObjectStorage)
        async throws -> ListPage
    {
        try await storage.list(prefix: prefix, delimiter: KeyPath.delimiter, continuation: continuation, maxKeys: nil)
    }

    /// After the last page: a child the listing did not show is gone, unless this mount holds
    /// it (then it is listed last) or found it since the listing was asked.
    private func finishListing(_ handle: DirectoryHandle, _ dir: Node, _ listing: Listing) {
        handle.listing = nil
        let trusted = listing.asked - ttl
        var held: [(String, Node)] = []
        for (name, ino) in dir.children {
            guard let n = nodes[ino], n.listedAt < listing.asked else { continue }
            if heldAgainstServer(n, askedAt: trusted) {
                held.append((name, n))
            } else if n.validUntil < listing.asked + ttl {
                detachGone(n, from: dir)
            }
        }
        for (name, n) in held.sorted(by: { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }) {
            handle.entries.append(entry(name, n))
        }
        dir.negative = Names()
        // Complete unless a name was dropped from the table meanwhile.
        if dir.childDroppedAt < listing.asked { dir.listedUntil = now + ttl }
    }

    private func entry(_ name: String, _ child: Node) -> DirectoryEntry {
        DirectoryEntry(
            name: name, attributes: attributes(child), attributesComplete: child.metadataKnown || child.isPinned,
            kindKnown: kindKnown(child))
    }
}
