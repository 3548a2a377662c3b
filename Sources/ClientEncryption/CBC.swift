// AES-128-CBC without padding, its state carried from one call to the next: OpenSSL's EVP
// (AES-NI where the CPU has it), not a cipher of our own.

import COpenSSL

/// One AES-128-CBC pass, fed whole 16-byte blocks in order. Encrypting, `chain` is the last
/// cipher block produced (the IV of what follows); decrypting, the last one consumed.
/// The OpenSSL objmount runs with ("OpenSSL 3.0.x 1 Jan 2025").
public var cryptoLibraryVersion: String { String(validatingCString: OpenSSL_version(OPENSSL_VERSION)) ?? "?" }

public final class CBCPass {
    public static let blockSize = 16
    private let context: OpaquePointer
    public private(set) var chain: [UInt8]

    public init(key: [UInt8], iv: [UInt8], encrypting: Bool) throws(EncryptionError) {
        guard key.count == 16 else {
            throw EncryptionError.badKey("the key must be 16 bytes (AES-128), not \(key.count)")
        }
        guard iv.count == Self.blockSize else { throw EncryptionError.malformed("an IV of \(iv.count) bytes") }
        guard let context = EVP_CIPHER_CTX_new() else { throw EncryptionError.cipher("EVP_CIPHER_CTX_new failed") }
        self.context = context
        self.encrypting = encrypting
        chain = iv
        let ok = key.withUnsafeBufferPointer { k in
            iv.withUnsafeBufferPointer { v in
                EVP_CipherInit_ex(context, EVP_aes_128_cbc(), nil, k.baseAddress, v.baseAddress, encrypting ? 1 : 0)
            }
        }
        guard ok == 1, EVP_CIPHER_CTX_set_padding(context, 0) == 1 else {
            throw EncryptionError.cipher("EVP_CipherInit_ex failed")
        }
    }

    private let encrypting: Bool

    deinit { EVP_CIPHER_CTX_free(context) }

    /// Encrypts or decrypts `input` (a multiple of 16 bytes) into `output` (at least as long).
    public func update(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer)
        throws(EncryptionError)
    {
        guard input.count % Self.blockSize == 0, output.count >= input.count else {
            throw EncryptionError.malformed("\(input.count) bytes are not whole cipher blocks")
        }
        guard run(input, output) else { throw EncryptionError.cipher("EVP_CipherUpdate failed") }
    }

    /// `update` into a new array.
    public func update(_ input: [UInt8]) throws(EncryptionError) -> [UInt8] {
        guard input.count % Self.blockSize == 0 else {
            throw EncryptionError.malformed("\(input.count) bytes are not whole cipher blocks")
        }
        var output = [UInt8](repeating: 0, count: input.count)
        let ok = input.withUnsafeBytes { i in output.withUnsafeMutableBytes { o in run(i, o) } }
        guard ok else { throw EncryptionError.cipher("EVP_CipherUpdate failed") }
        return output
    }

    private func run(_ input: UnsafeRawBufferPointer, _ output: UnsafeMutableRawBufferPointer) -> Bool {
        guard let inBase = input.baseAddress, let outBase = output.baseAddress else { return true }
        var done = 0
        while done < input.count {
            // EVP takes an Int32 length: 1 GiB at a time.
            let n = min(input.count - done, 1 << 30)
            var written: Int32 = 0
            let ok = EVP_CipherUpdate(
                context, (outBase + done).assumingMemoryBound(to: UInt8.self), &written,
                (inBase + done).assumingMemoryBound(to: UInt8.self), Int32(n))
            guard ok == 1, Int(written) == n else { return false }
            done += n
        }
        let from = encrypting ? UnsafeRawBufferPointer(output) : input
        chain = Array(from[(input.count - Self.blockSize)..<input.count])
        return true
    }
}

public enum EncryptionError: Error, Equatable, CustomStringConvertible {
    /// The key file or key is unusable (size, permissions, owner).
    case badKey(String)
    /// An object was encrypted with another key (its key fingerprint differs).
    case wrongKey(String)
    /// A body or metadata not in the format (a torn object, a bad pad).
    case malformed(String)
    case cipher(String)

    public var description: String {
        switch self {
        case .badKey(let s): return "encryption key: \(s)"
        case .wrongKey(let s): return "encrypted with another key: \(s)"
        case .malformed(let s): return "not in ks3sdk's encryption format: \(s)"
        case .cipher(let s): return "cipher: \(s)"
        }
    }
}
