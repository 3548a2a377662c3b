// The examples in doc/SEMANTICS.md are tests: every ```keys block there is loaded into a
// bucket, mounted through ObjectFS, walked, and compared with its `shows:` line.

import MemoryStorage
import ObjectFS
import ObjectStorage
import Testing

#if canImport(Glibc)
    import Glibc
#endif

struct KeysExample: CustomTestStringConvertible, Sendable {
    var line: Int
    var bucket: [(key: String, contentType: String?)]
    var prefix: String
    var shows: Set<String>
    var testDescription: String { "SEMANTICS.md line \(line)" }

    static func expand(_ s: String) -> String {
        // `x{256}` means 256 x characters.
        var out = ""
        var rest = Substring(s)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}"),
            let n = Int(rest[rest.index(after: open)..<close]), open > rest.startIndex
        {
            let ch = rest[rest.index(before: open)]
            out += rest[..<rest.index(before: open)]
            out += String(repeating: ch, count: n)
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }

    static func load() throws -> [KeysExample] {
        let path = String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/"))
        let text = try readText("/" + path + "/doc/SEMANTICS.md")
        var examples: [KeysExample] = []
        var current: [String: String]? = nil
        var start = 0
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            if line.trimmingCharacters() == "```keys" {
                current = [:]
                start = i + 1
            } else if current != nil && line.trimmingCharacters() == "```" {
                let c = current!
                func list(_ k: String) -> [String] {
                    (c[k] ?? "").split(separator: ",").map { String($0).trimmingCharacters() }.filter { !$0.isEmpty }
                }
                let bucket = list("bucket").map { item -> (String, String?) in
                    if item.hasSuffix("]"), let open = item.firstIndex(of: "[") {
                        return (
                            expand(String(item[..<open])),
                            String(item[item.index(after: open)..<item.index(before: item.endIndex)])
                        )
                    }
                    return (expand(item), nil)
                }
                examples.append(
                    KeysExample(
                        line: start, bucket: bucket, prefix: (c["prefix"] ?? "").trimmingCharacters(),
                        shows: Set(list("shows").map(expand))))
                current = nil
            } else if current != nil, let colon = line.firstIndex(of: ":") {
                current![String(line[..<colon])] = String(line[line.index(after: colon)...])
            }
        }
        return examples
    }
}

func readText(_ path: String) throws -> String {
    guard let f = fopen(path, "r") else { throw TestReadError(path: path) }
    defer { fclose(f) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        bytes += buf[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

struct TestReadError: Error { var path: String }

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}

@Suite struct SemanticsDocTests {
    @Test func theDocumentHasExamples() throws {
        #expect(try KeysExample.load().count >= 8)
    }

    @Test(arguments: try KeysExample.load())
    func exampleHolds(_ example: KeysExample) async throws {
        let memory = MemoryStorage()
        for (key, type) in example.bucket {
            _ = try await memory.put(
                key, payload: .bytes(type == nil ? Array("data".utf8) : []), options: PutOptions(contentType: type))
        }
        let config = ObjectFSConfiguration(prefix: example.prefix, stagingDirectory: uniqueStagingDirectory())
        let fs = try ObjectFS(storage: memory, configuration: config)
        var seen: Set<String> = []
        func walk(_ path: String, _ ino: InodeNumber) async throws {
            for e in try await fs.list(ino) {
                if e.attributes.kind == .directory {
                    seen.insert(path + e.name + "/")
                    try await walk(path + e.name + "/", e.ino)
                } else {
                    seen.insert(path + e.name)
                }
            }
        }
        try await walk("", rootInode)
        #expect(seen == example.shows)
        // Lookups agree with the listing.
        for path in example.shows {
            var ino = rootInode
            for part in path.split(separator: "/") {
                ino = try await fs.lookup(parent: ino, name: String(part)).ino
            }
            let a = try await fs.getattr(ino)
            #expect((a.kind == .directory) == path.hasSuffix("/"), "\(path)")
        }
    }
}
