import CapstanAPI
import CapstanCore
import Foundation
import Testing

/// A Secret reaches an instance as a file on a tmpfs and as an environment variable, and the CLI
/// does not print its value unless asked (issue 10). Real binaries.
@Suite(.serialized) struct SecretEndToEndTests {
    @Test func anInstanceReadsItsSecretFromATmpfsAndTheCLIHidesIt() async throws {
        try await withDevCluster { cluster in
            let reader = workloadYAML("reader", replicas: 1, command: #"echo file=$(cat $CAPSTAN_SECRET_DB/password); echo env=$PASSWORD; echo dir=$CAPSTAN_SECRET_DB; exec sleep 1000"#, template: """
                secrets:
                  - {secret: db, mountPath: /run/secrets/db, env: {PASSWORD: password}}
            """)
            let secret = """
                apiVersion: capstan.dev/v1
                kind: Secret
                metadata: {name: db}
                spec:
                  stringData: {password: hunter2-e2e}
                """
            let manifest = try cluster.manifest("secret.yaml", secret + "\n---\n" + reader)
            let applied = try await cluster.capstan("apply", "-f", manifest, "--wait", "--timeout", "30")
            #expect(applied.status == 0, "\(applied.error)")
            let name = try #require(try await cluster.instances(of: "reader").first).metadata.name
            var output = ""
            try await eventually("the instance printed its secret", timeout: 15) {
                output = try await cluster.capstan("logs", name).output
                return output.contains("dir=")
            }
            #expect(output.contains("file=hunter2-e2e") && output.contains("env=hunter2-e2e"), "\(output)")
            let directory = try #require(output.split(separator: "\n").first { $0.hasPrefix("dir=") }.map { String($0.dropFirst(4)) })
            #expect(directory.hasPrefix(SecretFilesLocation.root))
            let mode = (try FileManager.default.attributesOfItem(atPath: directory + "/password")[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o400)

            let hidden = try await cluster.capstan("get", "secret", "db", "-o", "yaml")
            #expect(hidden.status == 0 && !hidden.output.contains(Data("hunter2-e2e".utf8).base64EncodedString()) && hidden.output.contains("--show-secrets"), "\(hidden.output)")
            let shown = try await cluster.capstan("get", "secret", "db", "-o", "yaml", "--show-secrets")
            #expect(shown.output.contains(Data("hunter2-e2e".utf8).base64EncodedString()), "\(shown.output)")

            // Stopped: the files are gone from memory too.
            #expect(try await cluster.capstan("delete", "workload", "reader").status == 0)
            try await eventually("the instance is gone", timeout: 20) { try await cluster.instances(of: "reader").isEmpty }
            try await eventually("its secret files are removed", timeout: 10) { !FileManager.default.fileExists(atPath: directory) }
        }
    }
}

enum SecretFilesLocation {
    static let root = "/dev/shm/capstan-secrets/"
}
