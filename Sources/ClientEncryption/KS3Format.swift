// ks3sdk's client-side encryption format (`Connection(local_encrypt=True)`, ks3sdk 1.18.0:
// ks3/encryption.py, encryptFp.py, key.py, multipart.py; PROTOCOLS.md §4.4):
//
//   body = IV (16 random bytes) || AES-128-CBC(key, IV, plaintext || pad)
//
// with 1-16 pad bytes, each the character for their count: '1'...'9', then 'a'...'g' (not
// PKCS#7). An empty file is stored as it is, unencrypted. Metadata: `key` = base64 of the hex
// MD5 of the key, `iv` = base64 of the IV, `unencrypted-content-length` (and for multipart
// `unencrypted-content-md5`). A multipart upload chains CBC across parts in order: the first
// part starts with the IV, each next part uses the previous part's last cipher block as its
// IV, only the last part is padded — the parts together are the single-PUT body.

import Crypto

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

public enum KS3Format {
    public static let blockSize = 16
    /// User metadata names (without the driver's prefix: `x-kss-meta-`, `x-amz-meta-`...).
    public static let keyMetadata = "key"
    public static let ivMetadata = "iv"
    public static let lengthMetadata = "unencrypted-content-length"
    public static let md5Metadata = "unencrypted-content-md5"
    public static let metadataNames = [keyMetadata, ivMetadata, lengthMetadata, md5Metadata]

    /// The pad byte for a pad of `count` bytes (1...16).
    public static func padCharacter(count: Int) -> UInt8 {
        precondition((1...16).contains(count))
        return count <= 9 ? UInt8(ascii: "0") + UInt8(count) : UInt8(ascii: "a") + UInt8(count - 10)
    }

    /// The pad's length from its byte; nil for a byte no pad has.
    public static func padCount(character c: UInt8) -> Int? {
        switch c {
        case UInt8(ascii: "1")...UInt8(ascii: "9"): return Int(c - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "g"): return Int(c - UInt8(ascii: "a")) + 10
        default: return nil
        }
    }

    /// How many pad bytes follow a plaintext of `size` bytes: a whole block when it is aligned.
    public static func padCount(plainSize size: Int64) -> Int { blockSize - Int(size % Int64(blockSize)) }

    /// The stored body's size for a plaintext of `size` bytes (an empty file is stored empty).
    public static func bodySize(plainSize size: Int64) -> Int64 {
        size == 0 ? 0 : Int64(blockSize) + size + Int64(padCount(plainSize: size))
    }

    /// The key's fingerprint as the SDK stores it: base64 of the lower-case hex MD5 of the key.
    public static func fingerprint(key: [UInt8]) -> String {
        let hexDigest = Insecure.MD5.hash(data: key).map { byte in
            let digits = Array("0123456789abcdef".utf8)
            return String(decoding: [digits[Int(byte >> 4)], digits[Int(byte & 0xF)]], as: UTF8.self)
        }.joined()
        return Data(hexDigest.utf8).base64EncodedString()
    }

    /// Metadata for an object whose body starts with `iv`.
    public static func metadata(key: [UInt8], iv: [UInt8], plainSize: Int64, plainMD5: [UInt8]?) -> [String: String] {
        var m = [
            keyMetadata: fingerprint(key: key), ivMetadata: Data(iv).base64EncodedString(),
            lengthMetadata: String(plainSize),
        ]
        if let plainMD5 { m[md5Metadata] = Data(plainMD5).base64EncodedString() }
        return m
    }

    /// A fresh random IV.
    public static func randomIV() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<blockSize).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// The whole body of `plaintext` (a single PUT).
    public static func encrypt(_ plaintext: [UInt8], key: [UInt8], iv: [UInt8]) throws(EncryptionError) -> [UInt8] {
        if plaintext.isEmpty { return [] }
        var encryptor = try Encryptor(key: key, iv: iv)
        return try encryptor.next(plaintext, last: true)
    }

    /// The plaintext of a whole body (after checking its pad).
    public static func decrypt(_ body: [UInt8], key: [UInt8]) throws(EncryptionError) -> [UInt8] {
        if body.isEmpty { return [] }
        guard body.count >= 2 * blockSize, body.count % blockSize == 0 else {
            throw EncryptionError.malformed("a body of \(body.count) bytes")
        }
        let pass = try CBCPass(key: key, iv: Array(body[0..<blockSize]), encrypting: false)
        var plain = try pass.update(Array(body[blockSize...]))
        let pad = try padLength(ofLastBlock: plain[(plain.count - blockSize)...])
        plain.removeLast(pad)
        return plain
    }

    /// The pad's length from a decrypted last block, checked: every pad byte must be the same.
    public static func padLength(ofLastBlock block: ArraySlice<UInt8>) throws(EncryptionError) -> Int {
        guard block.count == blockSize, let last = block.last, let n = padCount(character: last),
            block.suffix(n).allSatisfy({ $0 == last })
        else { throw EncryptionError.malformed("no valid pad at the end (another key, or a torn object)") }
        return n
    }

    /// The plaintext size of a body of `bodySize` bytes, from its last two cipher blocks (the
    /// last 32 bytes of the body: the IV of the last block, and that block).
    public static func plainSize(bodySize: Int64, lastTwoBlocks: [UInt8], key: [UInt8]) throws(EncryptionError)
        -> Int64
    {
        guard bodySize >= 2 * Int64(blockSize), bodySize % Int64(blockSize) == 0, lastTwoBlocks.count == 2 * blockSize
        else { throw EncryptionError.malformed("a body of \(bodySize) bytes") }
        let pass = try CBCPass(key: key, iv: Array(lastTwoBlocks[0..<blockSize]), encrypting: false)
        let block = try pass.update(Array(lastTwoBlocks[blockSize...]))
        return bodySize - Int64(blockSize) - Int64(try padLength(ofLastBlock: block[...]))
    }

    /// Encrypts a plaintext handed over in order, in pieces of any whole number of blocks and a
    /// last piece of any size: the output pieces concatenated are the body. A multipart upload
    /// sends each output as a part (the SDK's format: the first part starts with the IV), or
    /// encrypts each part with an encryptor of its own that goes on from the `chain` of the
    /// part before (`continuing`: it does not write that IV again).
    public struct Encryptor {
        private let pass: CBCPass
        private var started: Bool
        private var finished = false

        public init(key: [UInt8], iv: [UInt8], continuing: Bool = false) throws(EncryptionError) {
            pass = try CBCPass(key: key, iv: iv, encrypting: true)
            started = continuing
        }

        /// The IV of what follows: the last cipher block so far (the object's IV at first).
        public var chain: [UInt8] { pass.chain }

        /// The body bytes for the next `plain` bytes (a multiple of 16 unless `last`, which pads).
        public mutating func next(_ plain: [UInt8], last: Bool) throws(EncryptionError) -> [UInt8] {
            guard !finished else { throw EncryptionError.malformed("data after the last piece") }
            var input = plain
            if last {
                let n = KS3Format.padCount(plainSize: Int64(plain.count))
                input += [UInt8](repeating: KS3Format.padCharacter(count: n), count: n)
                finished = true
            } else if plain.count % KS3Format.blockSize != 0 {
                throw EncryptionError.malformed("a piece of \(plain.count) bytes before the last")
            }
            var out = started ? [] : pass.chain
            started = true
            out += try pass.update(input)
            return out
        }
    }

    /// The body range to fetch for plaintext bytes `range` of an object of `plainSize` bytes,
    /// and where the wanted bytes start in the plaintext that range decrypts to. The range
    /// starts one block early: that cipher block (or the IV) is the IV of the first one wanted.
    public static func bodyRange(forPlain range: Range<Int64>, plainSize: Int64) -> (body: Range<Int64>, skip: Int)? {
        let upper = min(range.upperBound, plainSize)
        guard range.lowerBound >= 0, range.lowerBound < upper else { return nil }
        let b = Int64(blockSize)
        let first = range.lowerBound / b
        let last = (upper - 1) / b
        return (first * b..<(last + 2) * b, Int(range.lowerBound - first * b))
    }

    /// Decrypts what `bodyRange` fetched: `fetched` starts with the IV of its first block.
    /// Returns the plaintext bytes `range` (clamped to `plainSize`).
    public static func decrypt(
        fetched: [UInt8], forPlain range: Range<Int64>, plainSize: Int64, key: [UInt8]
    ) throws(EncryptionError) -> [UInt8] {
        guard let (body, skip) = bodyRange(forPlain: range, plainSize: plainSize) else { return [] }
        guard fetched.count == body.count else {
            throw EncryptionError.malformed("\(fetched.count) bytes where \(body.count) were asked")
        }
        let pass = try CBCPass(key: key, iv: Array(fetched[0..<blockSize]), encrypting: false)
        let plain = try pass.update(Array(fetched[blockSize...]))
        let count = Int(min(range.upperBound, plainSize) - range.lowerBound)
        return Array(plain[skip..<(skip + count)])
    }
}
