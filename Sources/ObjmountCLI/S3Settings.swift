// Where s3:// and ks3:// mounts find their credentials and endpoint: the places their users
// already keep them (the AWS CLI's variables and ~/.aws files; ks3sdk users' KS3_* variables),
// then flags for what is not secret.

import ObjectStorage
import S3Signing
import S3Storage

#if canImport(Glibc)
    import Glibc
#endif

struct S3Settings: Sendable {
    var provider: S3Provider
    var endpoint: S3Endpoint
    var credentials: SigningCredentials
    var storageClass: String?

    /// The AWS CLI's rules: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`,
    /// else the profile (`AWS_PROFILE`, or `default`) of `~/.aws/credentials`
    /// (`AWS_SHARED_CREDENTIALS_FILE`); region from the flag, `AWS_REGION`, `AWS_DEFAULT_REGION`
    /// or the profile in `~/.aws/config` (`AWS_CONFIG_FILE`), else us-east-1; endpoint from the
    /// flag, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, else AWS's regional one.
    static func s3(endpoint: String?, region: String?, pathStyle: Bool, storageClass: String?) throws(CLIError)
        -> S3Settings
    {
        let e = Paths.environment
        let profile = e("AWS_PROFILE") ?? e("AWS_DEFAULT_PROFILE") ?? "default"
        let home = Paths.home
        var credentials: SigningCredentials? = nil
        if let ak = e("AWS_ACCESS_KEY_ID"), let sk = e("AWS_SECRET_ACCESS_KEY"), !ak.isEmpty {
            credentials = SigningCredentials(
                accessKeyID: ak, secretAccessKey: sk,
                sessionToken: e("AWS_SESSION_TOKEN").flatMap { $0.isEmpty ? nil : $0 })
        } else {
            let file = e("AWS_SHARED_CREDENTIALS_FILE") ?? home + "/.aws/credentials"
            if let section = INIFile.read(file)?[profile], let ak = section["aws_access_key_id"],
                let sk = section["aws_secret_access_key"]
            {
                credentials = SigningCredentials(
                    accessKeyID: ak, secretAccessKey: sk, sessionToken: section["aws_session_token"])
            }
        }
        guard let credentials else {
            throw CLIError(
                "s3:// needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add profile '\(profile)' to ~/.aws/credentials"
            )
        }
        let config = INIFile.read(e("AWS_CONFIG_FILE") ?? home + "/.aws/config")
        let profileConfig = config?[profile == "default" ? "default" : "profile " + profile]
        let region = region ?? e("AWS_REGION") ?? e("AWS_DEFAULT_REGION") ?? profileConfig?["region"] ?? "us-east-1"
        let url =
            endpoint ?? e("AWS_ENDPOINT_URL_S3") ?? e("AWS_ENDPOINT_URL") ?? profileConfig?["endpoint_url"]
            ?? "https://s3.\(region).amazonaws.com"
        let provider = S3Provider.aws
        return S3Settings(
            provider: provider,
            endpoint: try endpointValue(url, region: region, pathStyle: pathStyle, provider: provider),
            credentials: credentials, storageClass: try validated(storageClass, provider))
    }

    /// `KS3_ACCESS_KEY_ID`, `KS3_SECRET_ACCESS_KEY` (`KS3_SECURITY_TOKEN` for temporary keys) and
    /// `KS3_ENDPOINT` or `--endpoint`: a region host such as `ks3-cn-beijing.ksyuncs.com` (HTTPS)
    /// or a URL.
    static func ks3(endpoint: String?, pathStyle: Bool, storageClass: String?) throws(CLIError) -> S3Settings {
        let e = Paths.environment
        guard let ak = e("KS3_ACCESS_KEY_ID"), let sk = e("KS3_SECRET_ACCESS_KEY"), !ak.isEmpty else {
            throw CLIError("ks3:// needs credentials: set KS3_ACCESS_KEY_ID and KS3_SECRET_ACCESS_KEY")
        }
        guard let url = endpoint ?? e("KS3_ENDPOINT"), !url.isEmpty else {
            throw CLIError(
                "ks3:// needs an endpoint: set KS3_ENDPOINT (e.g. ks3-cn-beijing.ksyuncs.com) or pass --endpoint")
        }
        let provider = S3Provider.ks3
        return S3Settings(
            provider: provider, endpoint: try endpointValue(url, region: "", pathStyle: pathStyle, provider: provider),
            credentials: SigningCredentials(
                accessKeyID: ak, secretAccessKey: sk, sessionToken: e("KS3_SECURITY_TOKEN")),
            storageClass: try validated(storageClass, provider))
    }

    static func endpointValue(_ url: String, region: String, pathStyle: Bool, provider: S3Provider) throws(CLIError)
        -> S3Endpoint
    {
        do { return try S3Endpoint(url: url, region: region, forcePathStyle: pathStyle, provider: provider) } catch {
            throw CLIError(error.description)
        }
    }

    static func validated(_ storageClass: String?, _ provider: S3Provider) throws(CLIError) -> String? {
        guard let storageClass else { return nil }
        let upper = storageClass.uppercased()
        guard provider.storageClasses.contains(upper) else {
            throw CLIError(
                "--storage-class \(storageClass) is not a \(provider.name):// storage class (\(provider.storageClasses.joined(separator: ", ")))"
            )
        }
        return upper
    }
}

/// The `[section]` / `key = value` files of the AWS CLI; `nil` when the file cannot be read.
enum INIFile {
    static func read(_ path: String) -> [String: [String: String]]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return parse(Spawn.readAll(fd))
    }

    static func parse(_ text: String) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        var section: String? = nil
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingWhitespace()
                continue
            }
            guard let section, let eq = line.firstIndex(of: "=") else { continue }
            out[section, default: [:]][line[..<eq].trimmingWhitespace().lowercased()] = line[line.index(after: eq)...]
                .trimmingWhitespace()
        }
        return out
    }
}
