@testable import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
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

    /// A test client that sends a bearer token with every request.
    struct Client: Sendable {
        let client: any TestClientProtocol
        var token: String?

        @discardableResult
        func execute<Return>(uri: String, method: HTTPRequest.Method, headers: HTTPFields = [:], body: ByteBuffer? = nil,
                             testCallback: @escaping (TestResponse) async throws -> Return = { $0 }) async throws -> Return {
            var headers = headers
            if let token { headers[.authorization] = "Bearer \(token)" }
            return try await client.execute(uri: uri, method: method, headers: headers, body: body, testCallback: testCallback)
        }

        func with(token: String?) -> Client { Client(client: client, token: token) }
    }

    /// Runs `body` against the API over a fresh store, as an admin.
    func withAPI(maxInstances: Int = 50_000, cached: (@Sendable (String, String) -> AnyResource?)? = nil, _ body: @escaping @Sendable (Client, ResourceStore) async throws -> Void) async throws {
        let store = try ResourceStore(path: directory + "/capstan.db", bus: EventBus())
        let admin = try store.createToken(role: "admin").token
        var routes = APIRoutes(writer: StoreWriter(store: store), metrics: ServerMetrics(), plugins: { [] }, isReady: { true }, maxInstances: maxInstances)
        routes.cached = cached
        let app = Application(router: routes.router())
        try await app.test(.router) { client in try await body(Client(client: client, token: admin), store) }
    }

    func error(_ response: TestResponse) throws -> ErrorBody {
        try JSONDecoder().decode(ErrorBody.self, from: Data(response.body.readableBytesView))
    }

    func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    static let yaml: HTTPFields = [.contentType: "application/yaml"]

    /// The answer to a create, an update and a status write is the object as the store wrote
    /// it (served from its stored JSON, not encoded again): the same object a GET then reads,
    /// with its revision, uid and generation.
    @Test func writesAnswerWithTheObjectAsStored() async throws {
        try await withAPI { client, store in
            let decode = { (response: TestResponse) throws -> AnyResource in try JSONDecoder().decode(AnyResource.self, from: Data(response.body.readableBytesView)) }
            let created = try await client.execute(uri: "/v1/workloads", method: .post, body: json(#"{"kind":"Workload","metadata":{"name":"w"},"spec":{"replicas":1,"template":{"command":["x"]}}}"#)) {
                #expect($0.status == .created)
                return try decode($0)
            }
            #expect(created.metadata.revision != nil && created.metadata.uid != nil && created.metadata.generation == 1)
            #expect(try store.get(kind: "Workload", name: "w") == created)
            let updated = try await client.execute(uri: "/v1/workloads/w", method: .put, body: json(#"{"kind":"Workload","metadata":{"name":"w","revision":\#(created.metadata.revision!)},"spec":{"replicas":2,"template":{"command":["x"]}}}"#)) {
                #expect($0.status == .ok)
                return try decode($0)
            }
            #expect(updated.metadata.generation == 2 && updated.metadata.revision! > created.metadata.revision!)
            #expect(try store.get(kind: "Workload", name: "w") == updated)
            // A Secret's stored form is sealed: its answer is encoded, and says the same.
            let secret = try await client.execute(uri: "/v1/secrets", method: .post, body: json(#"{"kind":"Secret","metadata":{"name":"s"},"spec":{"data":{"k":"dg=="}}}"#)) {
                #expect($0.status == .created)
                return try decode($0)
            }
            #expect(try store.get(kind: "Secret", name: "s") == secret)
            #expect(store.storedForms.object(at: secret.metadata.revision!) == nil)
        }
    }

    /// A PUT naming the revision the informer holds takes the stored side from the informer
    /// (no store read); any other revision reads the store. The copy here is doctored (its
    /// labels differ from the store's) only to show which one was used.
    @Test func putsUseTheInformersCopyOnlyAtTheRevisionTheyName() async throws {
        let doctored = Mutex<AnyResource?>(nil)
        try await withAPI(cached: { kind, name in doctored.withLock { $0 }.flatMap { $0.kind == kind && $0.name == name ? $0 : nil } }) { client, store in
            var instance = Instance(name: "i", spec: InstanceSpec(template: InstanceTemplate(command: ["x"]), nodeName: "n1"))
            instance.metadata.labels = ["from": "store"]
            let created = try store.create(.instance(instance))
            let revision = try #require(created.metadata.revision)
            var copy = created
            copy.metadata.labels = ["from": "informer"]
            // A stale copy (another revision): ignored, the store is read.
            copy.metadata.revision = revision - 1
            doctored.withLock { $0 = copy }
            let report = { (revision: UInt64) in #"{"kind":"Instance","metadata":{"name":"i","revision":\#(revision)},"spec":{"template":{"command":["x"]}},"status":{"phase":"Running","pid":7}}"# }
            let agent = client.with(token: try store.createToken(role: "node", node: "n1").token)
            try await agent.execute(uri: "/v1/instances/i/status", method: .put, body: json(report(revision))) { #expect($0.status == .ok) }
            let afterStale = try #require(try store.get(kind: "Instance", name: "i"))
            #expect(afterStale.metadata.labels == ["from": "store"])
            // A copy at the revision the PUT names: used (and the write's compare-and-swap on that
            // revision is what makes that safe).
            copy.metadata.revision = afterStale.metadata.revision
            doctored.withLock { $0 = copy }
            try await agent.execute(uri: "/v1/instances/i/status", method: .put, body: json(report(afterStale.metadata.revision ?? 0))) { #expect($0.status == .ok) }
            #expect(try store.get(kind: "Instance", name: "i")?.metadata.labels == ["from": "informer"])
        }
    }

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

    /// A body nested 100,000 deep (inside the size limit) is a 400, not a crash or a stack of
    /// 100,000 frames.
    @Test func deeplyNestedBodiesAreRefused() async throws {
        try await withAPI { client, store in
            let body = #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"x":"# + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}}"
            try await client.execute(uri: "/v1/workloads", method: .post, body: json(body)) { response in
                #expect(response.status == .badRequest)
            }
            #expect(try store.revision == 0)
        }
    }

    /// Requests are strict; a client reading the server's answers is lenient (a newer server may
    /// add a field an older CLI or agent does not know).
    @Test func unknownKeysAreRefusedInRequestsAndToleratedInAnswers() async throws {
        try await withAPI { client, store in
            let body = #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":1,"replicaz":2,"template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/workloads", method: .post, body: json(body)) { response in
                #expect(response.status == .badRequest)
                let message = try error(response).message
                #expect(message.contains("spec.replicaz: unknown key"), "\(message)")
            }
            #expect(try store.revision == 0)
        }
        let answer = #"{"type":"Added","revision":3,"object":{"kind":"Workload","metadata":{"name":"a","futureField":1},"spec":{"template":{"command":["x"]},"futureSpec":{}}}}"#
        let event = try APIClient.responseDecoder().decode(WatchEvent.self, from: Data(answer.utf8))
        guard case .workload(let workload)? = event.object else { Issue.record("not a workload: \(event)"); return }
        #expect(workload.metadata.name == "a" && workload.spec.template.command == ["x"])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(WatchEvent.self, from: Data(answer.utf8)) }
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
            try store.create(.instance(Instance(name: "i", spec: InstanceSpec(template: InstanceTemplate(command: ["x"]), nodeName: "n1"))))
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

/// Authentication, authorization and the fields only the system writes, through the routes
/// (issue 10: nobody gets in who was not let in; no client-forged state).
@Suite struct APIAuthTests {
    let helper = APIRoutesTests()

    func json(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    @Test func requestsWithoutAValidTokenAre401ExceptHealth() async throws {
        try await helper.withAPI { client, store in
            let anonymous = client.with(token: nil)
            for uri in ["/v1/workloads", "/metrics", "/v1/plugins", "/v1/watch/instances"] {
                try await anonymous.execute(uri: uri, method: .get) { response in
                    #expect(response.status == .unauthorized, "\(uri)")
                    #expect(response.headers[.wwwAuthenticate] == "Bearer")
                }
            }
            try await client.with(token: "abc.def").execute(uri: "/v1/workloads", method: .get) { #expect($0.status == .unauthorized) }
            for uri in ["/healthz", "/readyz"] {
                try await anonymous.execute(uri: uri, method: .get) { #expect($0.status == .ok, "\(uri)") }
            }
            // A revoked token stops working at once.
            let viewer = try store.createToken(role: "viewer")
            try await client.with(token: viewer.token).execute(uri: "/v1/workloads", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/tokens/\(viewer.record.id)", method: .delete) { #expect($0.status == .ok) }
            try await client.with(token: viewer.token).execute(uri: "/v1/workloads", method: .get) { #expect($0.status == .unauthorized) }
        }
    }

    @Test func aViewerReadsButCannotWriteOrManageTokens() async throws {
        try await helper.withAPI { client, store in
            let viewer = client.with(token: try store.createToken(role: "viewer").token)
            let body = #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":0,"template":{"command":["x"]}}}"#
            try await viewer.execute(uri: "/v1/workloads", method: .post, body: json(body)) { #expect($0.status == .forbidden) }
            try await viewer.execute(uri: "/v1/tokens", method: .get) { #expect($0.status == .forbidden) }
            try await viewer.execute(uri: "/v1/tokens", method: .post, body: json(#"{"role":"admin"}"#)) { #expect($0.status == .forbidden) }
            try await viewer.execute(uri: "/metrics", method: .get) { #expect($0.status == .ok) }
            #expect(try store.revision == 0)
        }
    }

    @Test func clientsCannotBindSetOwnersOrWriteStatus() async throws {
        try await helper.withAPI { client, store in
            // Binding at create: only the scheduler binds.
            let bound = #"{"kind":"Instance","metadata":{"name":"i"},"spec":{"nodeName":"n1","template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/instances", method: .post, body: json(bound)) { response in
                #expect(response.status == .forbidden)
            }
            let owned = #"{"kind":"Instance","metadata":{"name":"i","owner":"Workload/other"},"spec":{"template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/instances", method: .post, body: json(owned)) { #expect($0.status == .forbidden) }
            // Forged status on create is dropped.
            let forged = #"{"kind":"Instance","metadata":{"name":"i"},"spec":{"template":{"command":["x"]}},"status":{"phase":"Running","ready":true,"pid":1}}"#
            try await client.execute(uri: "/v1/instances", method: .post, body: json(forged)) { #expect($0.status == .created) }
            guard case .instance(let created)? = try store.get(kind: "Instance", name: "i") else { Issue.record("not stored"); return }
            #expect(created.status == InstanceStatus())
            // Status through the status route is for agents only.
            try await client.execute(uri: "/v1/instances/i/status", method: .put, body: json(forged)) { #expect($0.status == .forbidden) }
            // Moving a bound instance is refused; leaving nodeName out keeps the binding.
            var boundNow = created
            boundNow.spec.nodeName = "n1"
            boundNow.status.phase = .running
            try store.update(.instance(boundNow))
            let moved = #"{"kind":"Instance","metadata":{"name":"i"},"spec":{"nodeName":"n2","template":{"command":["x"]}}}"#
            try await client.execute(uri: "/v1/instances/i", method: .put, body: json(moved)) { #expect($0.status == .forbidden) }
            let relabelled = #"{"kind":"Instance","metadata":{"name":"i","labels":{"a":"b"}},"spec":{"template":{"command":["x"]}},"status":{"phase":"Failed"}}"#
            try await client.execute(uri: "/v1/instances/i", method: .put, body: json(relabelled)) { #expect($0.status == .ok) }
            guard case .instance(let kept)? = try store.get(kind: "Instance", name: "i") else { Issue.record("gone"); return }
            #expect(kept.spec.nodeName == "n1" && kept.status.phase == .running && kept.metadata.labels == ["a": "b"])
        }
    }

    @Test func aNodeWritesOnlyItsOwnInstancesStatus() async throws {
        try await helper.withAPI { client, store in
            let n1 = client.with(token: try store.createToken(role: "node", node: "n1").token)
            for (name, node) in [("mine", "n1"), ("theirs", "n2")] {
                try store.create(.instance(Instance(name: name, spec: InstanceSpec(template: InstanceTemplate(command: ["x"]), nodeName: node))))
            }
            let report = { (name: String) in #"{"kind":"Instance","metadata":{"name":"\#(name)"},"spec":{"template":{"command":["evil"]}},"status":{"phase":"Running","pid":42}}"# }
            try await n1.execute(uri: "/v1/instances/mine/status", method: .put, body: json(report("mine"))) { #expect($0.status == .ok) }
            guard case .instance(let mine)? = try store.get(kind: "Instance", name: "mine") else { Issue.record("gone"); return }
            // The status is the agent's; the spec stays as stored.
            #expect(mine.status.pid == 42 && mine.spec.template.command == ["x"])
            try await n1.execute(uri: "/v1/instances/theirs/status", method: .put, body: json(report("theirs"))) { #expect($0.status == .forbidden) }
            try await n1.execute(uri: "/v1/instances/theirs", method: .get) { #expect($0.status == .forbidden) }
            try await n1.execute(uri: "/v1/instances", method: .get) { #expect($0.status == .forbidden) }
            try await n1.execute(uri: "/v1/instances?nodeName=n1", method: .get) { #expect($0.status == .ok) }
            try await n1.execute(uri: "/v1/instances/mine", method: .put, body: json(report("mine"))) { #expect($0.status == .forbidden) }
            try await n1.execute(uri: "/v1/workloads", method: .get) { #expect($0.status == .forbidden) }
            try await n1.execute(uri: "/v1/instances/mine/log", method: .get) { #expect($0.status == .forbidden) }
        }
    }

    /// The SSRF seen before: a client-set agentAddress ending in `#` made the log proxy fetch any
    /// URL. Only a node's own agent sets it, and only as scheme://host:port.
    @Test func agentAddressesAreTheAgentsAndOnlyHostAndPort() async throws {
        try await helper.withAPI { client, store in
            let node = #"{"kind":"Node","metadata":{"name":"n1"},"spec":{"agentAddress":"http://169.254.169.254/latest#"}}"#
            try await client.execute(uri: "/v1/nodes", method: .post, body: json(node)) { #expect($0.status == .forbidden) }
            let agent = client.with(token: try store.createToken(role: "node", node: "n1").token)
            try await agent.execute(uri: "/v1/nodes", method: .post, body: json(node)) { response in
                #expect(response.status == .unprocessableContent)
            }
            let good = #"{"kind":"Node","metadata":{"name":"n1"},"spec":{"agentAddress":"http://127.0.0.1:9999"}}"#
            try await agent.execute(uri: "/v1/nodes", method: .post, body: json(good)) { #expect($0.status == .created) }
            // An admin may cordon it but not move its address.
            let moved = #"{"kind":"Node","metadata":{"name":"n1"},"spec":{"unschedulable":true,"agentAddress":"http://10.0.0.1:80"}}"#
            try await client.execute(uri: "/v1/nodes/n1", method: .put, body: json(moved)) { #expect($0.status == .forbidden) }
            let cordoned = #"{"kind":"Node","metadata":{"name":"n1"},"spec":{"unschedulable":true}}"#
            try await client.execute(uri: "/v1/nodes/n1", method: .put, body: json(cordoned)) { #expect($0.status == .ok) }
            guard case .node(let stored)? = try store.get(kind: "Node", name: "n1") else { Issue.record("gone"); return }
            #expect(stored.spec.agentAddress == "http://127.0.0.1:9999" && stored.spec.unschedulable)
        }
    }

    /// Issue 9, bug 1: applying an unchanged claim again kept its binding, so its data stays.
    @Test func reapplyingABoundClaimKeepsItsVolume() async throws {
        try await helper.withAPI { client, store in
            let claim = #"{"kind":"VolumeClaim","metadata":{"name":"data"},"spec":{"size":"1Gi"}}"#
            try await client.execute(uri: "/v1/volumeclaims", method: .post, body: json(claim)) { #expect($0.status == .created) }
            let agent = client.with(token: try store.createToken(role: "node", node: "n1").token)
            guard case .volumeClaim(var bound)? = try store.get(kind: "VolumeClaim", name: "data") else { Issue.record("gone"); return }
            bound.spec.volumeName = "data-1234"
            let body = String(decoding: try JSONEncoder().encode(AnyResource.volumeClaim(bound)), as: UTF8.self)
            try await agent.execute(uri: "/v1/volumeclaims/data", method: .put, body: json(body)) { #expect($0.status == .ok) }
            // `capstan apply` sends the manifest again, without volumeName.
            try await client.execute(uri: "/v1/volumeclaims/data", method: .put, body: json(claim)) { #expect($0.status == .ok) }
            guard case .volumeClaim(let kept)? = try store.get(kind: "VolumeClaim", name: "data") else { Issue.record("gone"); return }
            #expect(kept.spec.volumeName == "data-1234")
            // A node may not re-bind it elsewhere.
            bound.spec.volumeName = "other"
            bound.metadata.revision = kept.metadata.revision
            let rebind = String(decoding: try JSONEncoder().encode(AnyResource.volumeClaim(bound)), as: UTF8.self)
            try await agent.execute(uri: "/v1/volumeclaims/data", method: .put, body: json(rebind)) { #expect($0.status == .forbidden) }
        }
    }

    @Test func tokensAreCreatedListedWithoutSecretsAndRevoked() async throws {
        try await helper.withAPI { client, store in
            let created = try await client.execute(uri: "/v1/tokens", method: .post, body: json(#"{"role":"node","node":"n7","description":"worker"}"#)) { response in
                #expect(response.status == .created)
                return try JSONDecoder().decode(TokenCreated.self, from: Data(response.body.readableBytesView))
            }
            #expect(created.role == "node" && created.node == "n7" && created.token.hasPrefix(created.id + "."))
            #expect(store.authenticate(created.token)?.node == "n7")
            try await client.execute(uri: "/v1/tokens", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(created.id) && !text.contains(String(created.token.split(separator: ".")[1])))
            }
            try await client.execute(uri: "/v1/tokens", method: .post, body: json(#"{"role":"root"}"#)) { #expect($0.status == .unprocessableContent) }
            try await client.execute(uri: "/v1/tokens", method: .post, body: json(#"{"role":"node"}"#)) { #expect($0.status == .unprocessableContent) }
        }
    }
}

/// Secrets through the API: admins read values, viewers only keys, nodes only what their
/// instances use (issue 10).
@Suite struct SecretAPITests {
    let helper = APIRoutesTests()

    @Test func whoReadsWhatOfASecret() async throws {
        try await helper.withAPI { client, store in
            let body = #"{"kind":"Secret","metadata":{"name":"db"},"spec":{"stringData":{"password":"hunter2"}}}"#
            try await client.execute(uri: "/v1/secrets", method: .post, body: ByteBuffer(string: body)) { #expect($0.status == .created) }
            try await client.execute(uri: "/v1/secrets/db", method: .get) { response in
                #expect(String(buffer: response.body).contains(Data("hunter2".utf8).base64EncodedString()))
            }
            let viewer = client.with(token: try store.createToken(role: "viewer").token)
            for uri in ["/v1/secrets/db", "/v1/secrets"] {
                try await viewer.execute(uri: uri, method: .get) { response in
                    let text = String(buffer: response.body)
                    #expect(response.status == .ok && text.contains("password") && !text.contains(Data("hunter2".utf8).base64EncodedString()), "\(uri): \(text)")
                }
            }
            try await viewer.execute(uri: "/v1/watch/secrets", method: .get) { #expect($0.status == .forbidden) }
            let node = client.with(token: try store.createToken(role: "node", node: "n1").token)
            try await node.execute(uri: "/v1/secrets/db", method: .get) { #expect($0.status == .forbidden) }
            var template = InstanceTemplate(command: ["x"])
            template.secrets = [SecretMount(secret: "db", env: ["PASSWORD": "password"])]
            try store.create(.instance(Instance(name: "user", spec: InstanceSpec(template: template, nodeName: "n1"))))
            try await node.execute(uri: "/v1/secrets/db", method: .get) { response in
                #expect(response.status == .ok && String(buffer: response.body).contains(Data("hunter2".utf8).base64EncodedString()))
            }
            try await node.execute(uri: "/v1/secrets", method: .get) { #expect($0.status == .forbidden) }
        }
    }
}
