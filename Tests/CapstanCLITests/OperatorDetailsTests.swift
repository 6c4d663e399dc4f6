import CapstanAPI
import CapstanCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 9's operator details, on the real binary.
@Suite struct OperatorDetailsTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-details-\(UUID().uuidString.prefix(8))")

    init() throws { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }

    @Test func usageErrorsExitTwoAndAgentHelpShowsOnlyAgentFlags() async throws {
        let unknownKind = try await PluginsCLITests.run(["get", "gadgets"], in: directory)
        #expect(unknownKind.status == 2, "\(unknownKind)")
        #expect(unknownKind.error.contains("\"gadgets\" is not a kind"))
        let unknownFlag = try await PluginsCLITests.run(["get", "instances", "--no-such-flag"], in: directory)
        #expect(unknownFlag.status == 2)
        for timeout in ["nan", "-1", "inf"] {
            let odd = try await PluginsCLITests.run(["rollout", "status", "web", "--timeout", timeout], in: directory)
            #expect(odd.status == 2 && odd.error.contains("--timeout"), "\(timeout): \(odd)")
        }
        let help = try await PluginsCLITests.run(["agent", "--help"], in: directory)
        #expect(help.status == 0 && help.output.contains("--join-token"))
        for serverFlag in ["--watch-window", "--node-timeout", "--max-instances", "--accept-rollback", "--tls-san"] {
            #expect(!help.output.contains(serverFlag), "agent --help shows \(serverFlag)")
        }
        #expect(try await PluginsCLITests.run(["server", "--help"], in: directory).output.contains("--watch-window"))
    }

    @Test func pluginsVerifyCreatesNothing() async throws {
        let result = try await PluginsCLITests.run(["plugins", "verify"], in: directory)
        #expect(result.status == 0, "\(result)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "verify left files behind")
    }

    @Test func yamlPrintsWholeNumbersAsIntegersAndWideShowsTheGivenHostPort() async throws {
        try await withDevCluster { cluster in
            let manifest = try cluster.manifest("web.yaml", workloadYAML("web", replicas: 1, command: "exec python3 -m http.server $PORT --bind 127.0.0.1",
                                                                        template: "    ports: [{name: http, containerPort: 8080}]"))
            #expect(try await cluster.capstan("apply", "-f", manifest, "--wait", "--timeout", "30").status == 0)
            let yaml = try await cluster.capstan("get", "workload", "web", "-o", "yaml").output
            #expect(yaml.contains("terminationGracePeriodSeconds: 2\n") && yaml.contains("initialSeconds: 1\n"), "\(yaml)")
            #expect(!yaml.contains(".0\n"), "\(yaml)")
            let instance = try #require(try await cluster.instances(of: "web").first)
            let port = try #require(instance.status.ports.first, "the host port is in the instance's status")
            #expect(port.containerPort == 8080 && port.hostPort > 0)
            let wide = try await cluster.capstan("get", "instances", "-o", "wide").output
            #expect(wide.contains("\(port.hostPort):8080"), "\(wide)")
        }
    }

    @Test func logsFollowsBothStreamsAsOutputComes() async throws {
        try await withDevCluster { cluster in
            let go = cluster.dataDirectory.appendingPathComponent("go").path
            let manifest = try cluster.manifest("talk.yaml", workloadYAML("talk", replicas: 1, command: "echo out-1; echo err-1 >&2; while [ ! -e \(go) ]; do sleep 0.05; done; echo out-2; echo err-2 >&2; sleep 300"))
            _ = try await cluster.capstan("apply", "-f", manifest, "--wait", "--timeout", "30")
            let name = try #require(try await cluster.instances(of: "talk").first?.metadata.name)
            try await eventually("the first lines are written", timeout: 10) {
                try await cluster.capstan("logs", name).output == "out-1\nerr-1\n"
            }
            #expect(try await cluster.capstan("logs", name, "--stream", "stderr").output == "err-1\n")
            // Follow: new lines of both streams arrive without asking again.
            let follower = Process()
            follower.executableURL = PluginsCLITests.products.appendingPathComponent("capstan")
            follower.arguments = ["logs", "-f", name]
            follower.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_SERVER": cluster.address, "CAPSTAN_CONFIG": cluster.configPath]) { _, new in new }
            let output = cluster.dataDirectory.appendingPathComponent("follow.out")
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            follower.standardOutput = try FileHandle(forWritingTo: output)
            try follower.run()
            defer {
                kill(follower.processIdentifier, SIGKILL)
                follower.waitUntilExit()
            }
            try await eventually("logs -f prints what there is", timeout: 10) {
                (try? String(contentsOf: output, encoding: .utf8))?.contains("err-1") == true
            }
            _ = FileManager.default.createFile(atPath: go, contents: nil)
            try await eventually("logs -f prints the new lines of both streams", timeout: 10) {
                let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                return text.contains("out-2") && text.contains("err-2")
            }
        }
    }
}
