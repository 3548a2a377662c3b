// The codec of ks3sdk's client-side encryption format, against vectors the SDK's own code made
// (make_vectors.py, with ks3sdk 1.18.0): single bodies, multipart chaining, the pad table, and
// every ranged read of small objects.

import ClientEncryption
import Crypto
import Foundation
import Testing

struct Vectors: Decodable {
    struct Digest: Decodable {
        var size: Int
        var sha256: String
        var hex: String?
        var tail_hex: String?
    }
    struct Put: Decodable {
        var plain_size: Int
        var body: Digest
    }
    struct Multipart: Decodable {
        var part_plain_sizes: [Int]
        var parts: [Digest]
        var same_as_put: Bool
    }
    var key_hex: String
    var iv_hex: String
    var meta_key: String
    var meta_iv: String
    var pad_chars: [String: String]
    var known: [String: String]
    var put: [Put]
    var multipart: [Multipart]

    static let shared: Vectors = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("vectors.json")
        return try! JSONDecoder().decode(Vectors.self, from: Data(contentsOf: url))
    }()
}

func unhex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex {
        let j = s.index(i, offsetBy: 2)
        out.append(UInt8(s[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func hexString(_ b: some Sequence<UInt8>) -> String { b.map { String(format: "%02x", $0) }.joined() }

func expectMatches(_ bytes: [UInt8], _ d: Vectors.Digest) {
    #expect(bytes.count == d.size)
    #expect(hexString(SHA256.hash(data: bytes)) == d.sha256)
    if let h = d.hex { #expect(hexString(bytes) == h) }
    if let t = d.tail_hex { #expect(hexString(bytes.suffix(48)) == t) }
}

@Suite struct KS3FormatTests {
    let v = Vectors.shared
    var key: [UInt8] { unhex(v.key_hex) }
    var iv: [UInt8] { unhex(v.iv_hex) }

    @Test func thePadTableIsTheSDKs() {
        for n in 1...16 {
            let c = KS3Format.padCharacter(count: n)
            #expect(String(decoding: [c], as: UTF8.self) == v.pad_chars[String(n)])
            #expect(KS3Format.padCount(character: c) == n)
        }
        for c in [UInt8(ascii: "0"), UInt8(ascii: "h"), UInt8(ascii: "A"), 0, 16, 255] {
            #expect(KS3Format.padCount(character: c) == nil)
        }
        #expect(KS3Format.padCount(plainSize: 16) == 16)
        #expect(KS3Format.padCount(plainSize: 17) == 15)
        #expect(KS3Format.bodySize(plainSize: 0) == 0)
        #expect(KS3Format.bodySize(plainSize: 11) == 32)
        #expect(KS3Format.bodySize(plainSize: 16) == 48)
    }

    @Test func metadataAndKnownBodiesAreTheSDKs() throws {
        #expect(KS3Format.fingerprint(key: key) == v.meta_key)
        let m = KS3Format.metadata(key: key, iv: iv, plainSize: 11, plainMD5: nil)
        #expect(m["key"] == v.meta_key && m["iv"] == v.meta_iv && m["unencrypted-content-length"] == "11")
        for (text, cipher) in v.known {
            #expect(try KS3Format.encrypt(Array(text.utf8), key: key, iv: iv) == iv + unhex(cipher))
        }
    }

    @Test func singleBodiesMatchTheSDKAndDecryptBack() throws {
        for put in v.put {
            let plain = plaintext(put.plain_size)
            let body = try KS3Format.encrypt(plain, key: key, iv: iv)
            expectMatches(body, put.body)
            #expect(try KS3Format.decrypt(body, key: key) == plain)
            #expect(Int64(body.count) == KS3Format.bodySize(plainSize: Int64(plain.count)))
            let size = try KS3Format.plainSize(
                bodySize: Int64(body.count), lastTwoBlocks: Array(body.suffix(32)), key: key)
            #expect(size == Int64(plain.count))
        }
        #expect(try KS3Format.encrypt([], key: key, iv: iv) == [])
        #expect(try KS3Format.decrypt([], key: key) == [])
    }

    @Test func multipartPartsChainLikeTheSDKs() throws {
        for upload in v.multipart {
            #expect(upload.same_as_put)
            let whole = plaintext(upload.part_plain_sizes.reduce(0, +))
            var encryptor = try KS3Format.Encryptor(key: key, iv: iv)
            var offset = 0
            var body: [UInt8] = []
            for (k, size) in upload.part_plain_sizes.enumerated() {
                let last = k == upload.part_plain_sizes.count - 1
                let part = try encryptor.next(Array(whole[offset..<offset + size]), last: last)
                expectMatches(part, upload.parts[k])
                body += part
                offset += size
            }
            #expect(try KS3Format.decrypt(body, key: key) == whole)
        }
    }

    @Test func aPieceBeforeTheLastMustBeWholeBlocks() throws {
        var encryptor = try KS3Format.Encryptor(key: key, iv: iv)
        #expect(throws: EncryptionError.self) { _ = try encryptor.next([1, 2, 3], last: false) }
        _ = try encryptor.next([1, 2, 3], last: true)
        #expect(throws: EncryptionError.self) { _ = try encryptor.next([], last: true) }
    }

    @Test func everyRangeOfSmallObjectsDecryptsToThePlaintext() throws {
        for n in [1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 100] {
            let plain = plaintext(n)
            let body = try KS3Format.encrypt(plain, key: key, iv: iv)
            for s in 0..<n {
                for e in (s + 1)...(n + 20) {
                    let range = Int64(s)..<Int64(e)
                    let (want, skip) = try #require(KS3Format.bodyRange(forPlain: range, plainSize: Int64(n)))
                    // Whole blocks, one before the first wanted, never past the body.
                    #expect(want.lowerBound % 16 == 0 && want.count % 16 == 0 && want.count >= 32)
                    #expect(want.upperBound <= Int64(body.count))
                    #expect(skip == s % 16)
                    let fetched = Array(body[Int(want.lowerBound)..<Int(want.upperBound)])
                    let got = try KS3Format.decrypt(fetched: fetched, forPlain: range, plainSize: Int64(n), key: key)
                    #expect(got == Array(plain[s..<min(e, n)]), "n \(n) range \(s)..<\(e)")
                }
            }
            #expect(KS3Format.bodyRange(forPlain: Int64(n)..<Int64(n + 5), plainSize: Int64(n)) == nil)
        }
    }

    @Test func anotherKeyHasAnotherFingerprintAndATornBodyIsRefused() throws {
        let other = Array("6543210987654321".utf8)
        #expect(KS3Format.fingerprint(key: other) != v.meta_key)
        let body = try KS3Format.encrypt(plaintext(40), key: key, iv: iv)
        #expect(throws: EncryptionError.self) { _ = try KS3Format.decrypt(Array(body.dropLast(16)), key: key) }
        #expect(throws: EncryptionError.self) { _ = try KS3Format.decrypt(Array(body.dropLast(3)), key: key) }
    }
}

@Suite struct KeyFileTests {
    func path(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("keyfile-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    @Test func aGeneratedKeyIs16PrivateBytesAndLoads() throws {
        let p = path("key")
        try KeyFile.generate(p)
        let attrs = try FileManager.default.attributesOfItem(atPath: p)
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        #expect(try KeyFile.load(p).count == 16)
        // Never overwritten.
        #expect(throws: EncryptionError.self) { try KeyFile.generate(p) }
        // Loadable by ks3sdk, which strips whitespace at both ends: never a key that has some.
        let dir = path("many")
        for i in 0..<300 {
            try KeyFile.generate(dir + "\(i)")
            let key = try KeyFile.load(dir + "\(i)")
            #expect(
                key.count == 16 && ![9, 10, 11, 12, 13, 32].contains(key.first!)
                    && ![9, 10, 11, 12, 13, 32].contains(key.last!))
        }
    }

    @Test func aTypedKeyWithANewlineLoadsAsTheSDKLoadsIt() throws {
        let p = path("typed")
        #expect(FileManager.default.createFile(atPath: p, contents: Data("1234567890123456\n".utf8)))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: p)
        #expect(try KeyFile.load(p) == Array("1234567890123456".utf8))
    }

    @Test func aKeyOthersCanReadOrOfTheWrongSizeIsRefused() throws {
        let p = path("key")
        #expect(FileManager.default.createFile(atPath: p, contents: Data("1234567890123456".utf8)))
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: p)
        #expect {
            _ = try KeyFile.load(p)
        } throws: { error in
            "\(error)".contains("chmod 600")
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o400], ofItemAtPath: p)
        #expect(try KeyFile.load(p) == Array("1234567890123456".utf8))
        let short = path("short")
        #expect(FileManager.default.createFile(atPath: short, contents: Data("12345".utf8)))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: short)
        #expect(throws: EncryptionError.self) { _ = try KeyFile.load(short) }
        #expect(throws: EncryptionError.self) { _ = try KeyFile.load(path("missing")) }
    }
}
