// DecryptingSink: a ranged GET of an encrypted object decrypted as its body arrives. The body
// range starts with the IV of its first cipher block (KS3Format.bodyRange); whole blocks are
// decrypted as they come and the plaintext bytes asked for are handed on to the reader's sink,
// so no response is held whole in memory (a read-ahead window of 8 MiB stays 8 MiB of blocks
// in the cache, not a second copy).

import ObjectStorage

/// The transport calls `begin`, `append` and `drain` one after the other, never at once: the
/// state needs no lock.
final class DecryptingSink: BodySink, @unchecked Sendable {
    private let inner: any BodySink
    private let key: [UInt8]
    /// Plaintext bytes still to drop (the range starts inside a block), and to hand on.
    private var skip: Int
    private var left: Int
    private var pass: CBCPass?
    /// The IV while it arrives; the start of a cipher block cut by a chunk's end.
    private var iv: [UInt8] = []
    private var pending: [UInt8] = []
    /// Body bytes received (over all attempts), and where this attempt's body is.
    private var received = 0
    private var position = 0
    private var begun = false
    private var output: [UInt8] = []
    private(set) var failure: EncryptionError?

    init(into inner: any BodySink, key: [UInt8], skip: Int, count: Int) {
        self.inner = inner
        self.key = key
        self.skip = skip
        self.left = count
    }

    func begin(at: Int64) {
        position = Int(at)
        if !begun {
            begun = true
            inner.begin(at: 0)
        }
    }

    func append(_ bytes: UnsafeRawBufferPointer) {
        // A retry that could not resume repeats what was received (the same version): skip it.
        let repeated = min(bytes.count, max(0, received - position))
        position += bytes.count
        received += bytes.count - repeated
        var rest = UnsafeRawBufferPointer(rebasing: bytes[repeated...])
        if pass == nil {
            let n = min(CBCPass.blockSize - iv.count, rest.count)
            iv.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<n]))
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            guard iv.count == CBCPass.blockSize else { return }
            do { pass = try CBCPass(key: key, iv: iv, encrypting: false) } catch {
                failure = error
                return
            }
        }
        if !pending.isEmpty {
            let n = min(CBCPass.blockSize - pending.count, rest.count)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<n]))
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
            guard pending.count == CBCPass.blockSize else { return }
            let block = pending
            pending = []
            block.withUnsafeBytes { decrypt($0) }
        }
        let whole = rest.count - rest.count % CBCPass.blockSize
        decrypt(UnsafeRawBufferPointer(rebasing: rest[0..<whole]))
        pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[whole...]))
    }

    /// Decrypts whole cipher blocks and hands on the wanted part of their plaintext.
    private func decrypt(_ cipher: UnsafeRawBufferPointer) {
        guard let pass, left > 0, failure == nil, !cipher.isEmpty else { return }
        if output.count < cipher.count { output = [UInt8](repeating: 0, count: cipher.count) }
        failure = output.withUnsafeMutableBytes { out -> EncryptionError? in
            do throws(EncryptionError) { try pass.update(cipher, into: out) } catch { return error }
            return nil
        }
        guard failure == nil else { return }
        let from = min(skip, cipher.count)
        skip -= from
        let n = min(left, cipher.count - from)
        guard n > 0 else { return }
        output.withUnsafeBytes { inner.append(UnsafeRawBufferPointer(rebasing: $0[from..<(from + n)])) }
        left -= n
    }

    func drain() async { await inner.drain() }

    /// After the body: every wanted byte came and decrypted.
    func finish() throws(EncryptionError) {
        if let failure { throw failure }
        guard left == 0 else { throw EncryptionError.malformed("the body ended \(left) bytes short") }
    }
}
