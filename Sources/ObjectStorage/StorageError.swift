#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Everything a storage driver can fail with. Each case maps to one errno (`errno`), in this one
/// table, so the filesystem reports the same error for the same cause on every driver.
public enum StorageError: Error, Hashable, Sendable, CustomStringConvertible {
    case notFound(ObjectKey)
    /// `If-Match` / `If-None-Match` did not hold: the object changed under us.
    case preconditionFailed(ObjectKey)
    case accessDenied(String)
    case invalidArgument(String)
    case quotaExceeded
    case entityTooLarge
    /// The bucket/container is not empty (delete bucket).
    case notEmpty(String)
    /// The server could not be reached or kept failing after retries.
    case unavailable(String)
    /// A reply the driver could not understand.
    case malformedReply(String)
    /// A local file of an upload could not be read.
    case localIO(Int32, String)
    case other(String)

    public var errno: Int32 {
        switch self {
        case .notFound: ENOENT
        case .preconditionFailed: ESTALE
        case .accessDenied: EACCES
        case .invalidArgument: EINVAL
        case .quotaExceeded: EDQUOT
        case .entityTooLarge: EFBIG
        case .notEmpty: ENOTEMPTY
        case .unavailable: EIO
        case .malformedReply: EIO
        case .localIO(let code, _): code
        case .other: EIO
        }
    }

    public var description: String {
        switch self {
        case .notFound(let key): "no such object: \(key)"
        case .preconditionFailed(let key): "object changed on the server: \(key)"
        case .accessDenied(let why): "access denied: \(why)"
        case .invalidArgument(let why): "invalid argument: \(why)"
        case .quotaExceeded: "quota exceeded"
        case .entityTooLarge: "object too large for the server"
        case .notEmpty(let what): "not empty: \(what)"
        case .unavailable(let why): "storage unavailable: \(why)"
        case .malformedReply(let why): "malformed reply from the server: \(why)"
        case .localIO(let code, let why): "local I/O error \(code): \(why)"
        case .other(let why): why
        }
    }
}
