// KSS V2 against the official SDK at test time: ks3sdk (in the python named by
// OBJMOUNT_TEST_VENV_PYTHON; scripts/test.sh makes that virtualenv) signs a few hundred random
// requests — non-ASCII and reserved characters in keys, doubled slashes, signed and unsigned
// sub-resources, x-kss-* headers with odd spacing — and our signer must give the same string to
// sign, signature and URL path for each. Skipped when the variable is unset.

import Foundation
import S3Signing
import Testing

@Suite struct KSSV2LiveTests {
    static var python: String? { ProcessInfo.processInfo.environment["OBJMOUNT_TEST_VENV_PYTHON"] }

    @Test(.enabled(if: python != nil, "OBJMOUNT_TEST_VENV_PYTHON (a python with ks3sdk) is not set"))
    func randomRequestsSignLikeTheSDK() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("generate_kss_vectors.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python!)
        process.arguments = [script, "--json", "--random", "400"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "the ks3sdk vector generator failed")
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let seed = json["seed"] as? Int ?? -1
        let cases = try #require(json["cases"] as? [[String: Any]])
        #expect(cases.count == 400)
        for c in cases {
            let name = c["name"] as! String
            let bucket = c["bucket"] as! String
            let resource = S3Resource(bucket: bucket.isEmpty ? nil : bucket, key: c["key"] as! String)
            let query = (c["query"] as! [[Any]]).map { QueryItem($0[0] as! String, $0[1] as? String) }
            let headers = (c["headers"] as! [[String]]).map { HTTPHeader($0[0], $0[1]) }
            let request = SignableRequest(
                method: c["method"] as! String, path: c["path"] as! String, query: query, headers: headers)
            let result = KSSV2.headerAuth(request, resource: resource, credentials: kssCredentials, date: kssInstant)
            #expect(result.stringToSign == c["stringToSign"] as! String, "\(name) (seed \(seed))")
            #expect(result.signature == c["signature"] as! String, "\(name) (seed \(seed))")
            #expect(KSSV2.path(resource, pathStyle: true) == c["path"] as! String, "\(name) (seed \(seed))")
        }
    }
}
