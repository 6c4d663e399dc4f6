import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import CapstanServer

/// The API's answers to malformed, hostile and out-of-range requests, in process (Hummingbird's
/// router test framework over a temporary store). Each case crashed, exhausted or misled the
/// server before issue 10.
@Suite struct APIRoutesTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "capstan-api-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// Runs `body` against the API over a fresh store.
    func withAPI(maxInstances: Int = 50_000, _ body: @escaping @Sendable (any TestClientProtocol, ResourceStore) async throws -> Void) async throws {
        let store = try ResourceStore(path: directory + "/capstan.db", bus: EventBus())
        let routes = APIRoutes(writer: StoreWriter(store: store), metrics: ServerMetrics(), plugins: { [] }, isReady: { true }, maxInstances: maxInstances)
        let app = Application(router: routes.router())
        try await app.test(.router) { client in try await body(client, store) }
    }

    func error(_ response: TestResponse) throws -> ErrorBody {
        try JSONDecoder().decode(ErrorBody.self, from: Data(response.body.readableBytesView))
    }

    func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    static let yaml: HTTPFields = [.contentType: "application/yaml"]

    @Test func unknownMethodsAnswer405WithAllowInTheErrorFormat() async throws {
        try await withAPI { client, _ in
            try await client.execute(uri: "/v1/workloads", method: .patch) { response in
                #expect(response.status == .methodNotAllowed)
                #expect(response.headers[.allow] == "GET, POST")
                let failure = try error(response)
                #expect(failure.reason == "MethodNotAllowed")
            }
            try await client.execute(uri: "/healthz", method: .post) { response in
                #expect(response.status == .methodNotAllowed)
            }
        }
    }

    @Test func unknownPathsAnswer404InTheErrorFormat() async throws {
        try await withAPI { client, _ in
            try await client.execute(uri: "/v2/anything/at/all", method: .get) { response in
                #expect(response.status == .notFound)
                let failure = try error(response)
                #expect(failure.message.contains("no such path"))
            }
        }
    }

    @Test func aBodyOverTheLimitIs413AndClosesTheConnection() async throws {
        try await withAPI { client, store in
            let body = ByteBuffer(repeating: UInt8(ascii: "a"), count: RequestDecoding.maxBodyBytes + 1)
            try await client.execute(uri: "/v1/workloads", method: .post, body: body) { response in
                #expect(response.status == .contentTooLarge)
                #expect(response.headers[.connection] == "close")
                let failure = try error(response)
                #expect(failure.reason == "PayloadTooLarge")
            }
            #expect(try store.revision == 0)
        }
    }

    @Test func duplicateJSONKeysAreRefusedWithTheirPath() async throws {
        try await withAPI { client, store in
            let body = #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"template":{"command":["x"],"env":{"A":"1","\u0041":"2"}}}}"#
            try await client.execute(uri: "/v1/workloads", method: .post, body: json(body)) { response in
                #expect(response.status == .badRequest)
                let failure = try error(response)
                #expect(failure.message.contains("spec.template.env: the key \"A\" appears more than once"))
            }
            #expect(try store.revision == 0)
        }
    }

    @Test func aFractionalReplicasNamesTheField() async throws {
        try await withAPI { client, _ in
            let body = #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":1.5,"template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/workloads", method: .post, body: json(body)) { response in
                #expect(response.status == .badRequest)
                let message = try error(response).message
                #expect(message.contains("spec.replicas: expected an integer"))
                #expect(!message.contains("Int") && !message.contains("Swift"))
            }
        }
    }

    @Test func yamlErrorsGiveLineAndColumn() async throws {
        try await withAPI { client, _ in
            let body = "kind: Workload\nmetadata:\n  name: a\nspec:\n  replicas: [\n"
            try await client.execute(uri: "/v1/workloads", method: .post, headers: Self.yaml, body: json(body)) { response in
                #expect(response.status == .badRequest)
                let message = try error(response).message
                #expect(message.contains("line 6, column 1"))
                #expect(!message.contains("Yams") && !message.contains("YamlError"))
            }
        }
    }

    @Test func aYAMLAliasBombIsRefusedBeforeDecoding() async throws {
        var lines = [#"a0: &a0 ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"]"#]
        for level in 1..<30 { lines.append("a\(level): &a\(level) [*a\(level - 1), *a\(level - 1), *a\(level - 1), *a\(level - 1)]") }
        let body = "kind: Workload\nmetadata:\n  name: bomb\n  labels:\n    " + lines.joined(separator: "\n    ") + "\nspec:\n  template:\n    command: [x]\n"
        try await withAPI { client, store in
            let started = ContinuousClock.now
            try await client.execute(uri: "/v1/workloads", method: .post, headers: Self.yaml, body: json(body)) { response in
                #expect(response.status == .badRequest)
                let failure = try error(response)
                #expect(failure.message.contains("expands to more than"))
            }
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(try store.revision == 0)
        }
    }

    @Test func outOfRangeNumbersAre422WithEveryField() async throws {
        try await withAPI { client, store in
            let body = #"""
                {"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":1000000,"strategy":{"maxSurge":9223372036854775807},
                 "restartBackoff":{"initialSeconds":1e19,"maxSeconds":1e19},
                 "template":{"command":["x"],"resources":{"requests":{"cpu":"5e15"}},
                 "livenessProbe":{"tcpSocket":{"port":80},"initialDelaySeconds":1e17,"periodSeconds":1e17,"timeoutSeconds":1e17}}}}
                """#
            try await client.execute(uri: "/v1/workloads", method: .post, body: json(body)) { response in
                #expect(response.status == .unprocessableContent)
                let failure = try error(response)
                let paths = Set(failure.problems.map(\.path))
                #expect(paths == ["spec.replicas", "spec.strategy.maxSurge", "spec.restartBackoff.initialSeconds", "spec.restartBackoff.maxSeconds",
                                  "spec.template.resources.requests.cpu", "spec.template.livenessProbe.initialDelaySeconds",
                                  "spec.template.livenessProbe.periodSeconds", "spec.template.livenessProbe.timeoutSeconds"])
            }
            #expect(try store.revision == 0)
        }
    }

    @Test func theClusterMaximumOnInstancesHolds() async throws {
        try await withAPI(maxInstances: 10) { client, store in
            let first = #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":6,"template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/workloads", method: .post, body: json(first)) { #expect($0.status == .created) }
            let second = #"{"kind":"Workload","metadata":{"name":"b"},"spec":{"replicas":5,"template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/workloads", method: .post, body: json(second)) { response in
                #expect(response.status == .unprocessableContent)
                let failure = try error(response)
                #expect(failure.problems.first?.path == "spec.replicas")
            }
            // Updating a workload counts its new replicas, not old + new.
            let grown = #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":10,"template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/workloads/a", method: .put, body: json(grown)) { #expect($0.status == .ok) }
            let instance = #"{"kind":"Instance","metadata":{"name":"loose"},"spec":{"template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/instances", method: .post, body: json(instance)) { #expect($0.status == .created) }
            #expect(try store.get(kind: "Workload", name: "b") == nil)
        }
    }

    @Test func aWatchFromTheFutureIsRefused() async throws {
        try await withAPI { client, _ in
            try await client.execute(uri: "/v1/watch/instances?revision=999", method: .get) { response in
                #expect(response.status == .badRequest)
                let failure = try error(response)
                #expect(failure.message.contains("in the future"))
            }
        }
    }

    @Test func logOffsetsAndSizesHaveARange() async throws {
        try await withAPI { client, store in
            var instance = Instance(name: "i", spec: InstanceSpec(template: InstanceTemplate(command: ["x"]), nodeName: "n1"))
            instance.metadata.owner = nil
            try store.create(.instance(instance))
            for query in ["offset=9223372036854775808", "offset=-1", "offset=abc", "maxBytes=0", "maxBytes=99999999999"] {
                try await client.execute(uri: "/v1/instances/i/log?\(query)", method: .get) { response in
                    #expect(response.status == .badRequest, "\(query)")
                }
            }
        }
    }

    @Test func saturatingConversionsNeverTrap() {
        #expect(Duration.clampedSeconds(1e19) == .seconds(Int64(FieldLimits.maxSeconds)))
        #expect(Duration.clampedSeconds(-5) == .zero && Duration.clampedSeconds(.nan) == .zero && Duration.clampedSeconds(.infinity) == .seconds(Int64(FieldLimits.maxSeconds)))
        #expect(Int64(saturating: 1e30) == .max && Int64(saturating: -1e30) == .min && Int(saturating: .nan) == 0)
    }
}
