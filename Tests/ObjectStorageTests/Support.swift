#if canImport(Glibc)
    import Glibc
#endif

struct TestIOError: Error {}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw TestIOError() }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard n == bytes.count else { throw TestIOError() }
}

func removeFile(_ path: String) { unlink(path) }
