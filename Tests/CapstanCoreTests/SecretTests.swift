import CapstanCore
import Foundation
import Testing

@Suite struct SecretTests {
    func decode(_ json: String) throws -> Secret {
        try JSONDecoder().decode(Secret.self, from: Data(json.utf8))
    }

    @Test func dataIsBase64AndStringDataIsPlainText() throws {
        let secret = try decode(#"{"kind":"Secret","metadata":{"name":"db"},"spec":{"data":{"password":"aHVudGVyMg=="},"stringData":{"user":"admin"}}}"#)
        #expect(secret.spec.data["password"] == Array("hunter2".utf8) && secret.spec.data["user"] == Array("admin".utf8))
        // Written back always as base64 data.
        let text = String(decoding: try JSONEncoder().encode(secret), as: UTF8.self)
        #expect(text.contains("\"YWRtaW4=\"") && !text.contains("stringData") && !text.contains("hunter2"))
        #expect(try decode(text) == secret)
    }

    @Test func badBase64NamesTheKey() {
        #expect {
            _ = try decode(#"{"kind":"Secret","metadata":{"name":"db"},"spec":{"data":{"password":"not base64!"}}}"#)
        } throws: { error in
            guard let decoding = error as? DecodingError else { return false }
            return decoding.problem.path == "spec.data.password" && decoding.problem.message.contains("stringData")
        }
    }

    @Test func keysBecomeFileNamesAndSizeIsBounded() {
        let bad = Secret(name: "s", spec: SecretSpec(data: ["../etc/passwd": [1], "ok.key": [2], "..": [3]]))
        #expect(Set(bad.validate().map(\.path)) == ["spec.data...", "spec.data.../etc/passwd"])
        let big = Secret(name: "s", spec: SecretSpec(data: ["a": Array(repeating: 0, count: SecretSpec.maxBytes + 1)]))
        #expect(big.validate().map(\.path) == ["spec.data"])
    }

    @Test func templatesNameSecretsToMountOrExport() {
        var template = InstanceTemplate(command: ["x"])
        template.secrets = [SecretMount(secret: "Bad_Name"), SecretMount(secret: "db", mountPath: "relative", env: ["PASSWORD": "pass/word"])]
        let problems = Set(Workload(name: "w", spec: WorkloadSpec(replicas: 1, template: template)).validate().map(\.path))
        #expect(problems == ["spec.template.secrets[0].secret", "spec.template.secrets[0]", "spec.template.secrets[1].mountPath", "spec.template.secrets[1].env.PASSWORD"])
    }
}
