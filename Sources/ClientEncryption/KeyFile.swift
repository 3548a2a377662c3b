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
        var key = [UInt8](repeating: 0, count: 17)
        let n = key.withUnsafeMutableBytes { read(fd, $0.baseAddress, 17) }
        guard n == 16 else {
            throw EncryptionError.badKey("\(path) must hold exactly 16 bytes (an AES-128 key), it holds \(st.st_size)")
        }
        key.removeLast()
        return key
    }

    /// Writes a new random key to `path` (which must not exist), mode 0600.
    public static func generate(_ path: String) throws(EncryptionError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw EncryptionError.badKey("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        var key = [UInt8](repeating: 0, count: 16)
        var g = SystemRandomNumberGenerator()
        for i in key.indices { key[i] = UInt8.random(in: 0...255, using: &g) }
        let written = key.withUnsafeBytes { write(fd, $0.baseAddress, 16) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == 16, synced else {
            unlink(path)
            throw EncryptionError.badKey("cannot write \(path)")
        }
    }
}
