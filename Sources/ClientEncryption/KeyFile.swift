// The key file: 16 raw bytes, as ks3sdk's `Crypts.generate_key` writes it. It must be the
// user's own and readable by nobody else (0600 or 0400): the key never leaves this machine.

#if canImport(Glibc)
    import Glibc
#endif

public enum KeyFile {
    /// The key in `path`, after checking its owner, mode and size.
    public static func load(_ path: String) throws(EncryptionError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            throw EncryptionError.badKey("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw EncryptionError.badKey("cannot stat \(path)") }
        guard st.st_mode & S_IFMT == S_IFREG else { throw EncryptionError.badKey("\(path) is not a regular file") }
        guard st.st_uid == geteuid() else {
            throw EncryptionError.badKey("\(path) belongs to uid \(st.st_uid), not to you (uid \(geteuid()))")
        }
        let mode = st.st_mode & 0o777
        guard mode == 0o600 || mode == 0o400 else {
            throw EncryptionError.badKey(
                "\(path) has mode \(String(mode, radix: 8)); others must not read a key: chmod 600 \(path)")
        }
        // Read as ks3sdk reads it (`Connection.load_key`): the content without the ASCII
        // whitespace at either end must be 16 bytes (a typed key with a newline works).
        var content = [UInt8](repeating: 0, count: 65)
        let n = content.withUnsafeMutableBytes { read(fd, $0.baseAddress, 65) }
        let key = n > 0 ? Array(stripped(content[0..<n])) : []
        guard n <= 64, key.count == 16 else {
            throw EncryptionError.badKey(
                "\(path) must hold a 16-byte AES-128 key (without whitespace at either end), it holds \(st.st_size) bytes"
            )
        }
        return key
    }

    /// Python's `bytes.strip()`: without space, \t, \n, \v, \f, \r at either end.
    static func stripped(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let space: Set<UInt8> = [0x20, 0x09, 0x0A, 0x0B, 0x0C, 0x0D]
        var s = bytes
        while let f = s.first, space.contains(f) { s = s.dropFirst() }
        while let l = s.last, space.contains(l) { s = s.dropLast() }
        return s
    }

    /// Writes a new random key to `path` (which must not exist), mode 0600.
    public static func generate(_ path: String) throws(EncryptionError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw EncryptionError.badKey("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        var key = [UInt8](repeating: 0, count: 16)
        var g = SystemRandomNumberGenerator()
        // ks3sdk strips whitespace from both ends of a key file: such a key would not load there.
        repeat {
            for i in key.indices { key[i] = UInt8.random(in: 0...255, using: &g) }
        } while stripped(key[...]).count != 16
        let written = key.withUnsafeBytes { write(fd, $0.baseAddress, 16) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == 16, synced else {
            unlink(path)
            throw EncryptionError.badKey("cannot write \(path)")
        }
    }
}
