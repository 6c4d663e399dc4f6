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

/// Issue 11, the control plane's half: services get a virtual IP from the service CIDR and keep
/// it across applies, nodes get a pod subnet from the cluster CIDR, and endpoints are the ready
/// instances a selector matches, with the reason when there are none.
@Suite struct NetworkControlPlaneTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "capstan-net-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// The API over a fresh store with an address plan; the allocator reads the store (as the
    /// server's reads its informer).
    func withAPI(clusterCIDR: String = "10.244.0.0/16", serviceCIDR: String = "10.96.0.0/16", _ body: @escaping @Sendable (APIRoutesTests.Client, ResourceStore) async throws -> Void) async throws {
        let store = try ResourceStore(path: directory + "/capstan.db", bus: EventBus())
        let admin = try store.createToken(role: "admin").token
        var routes = APIRoutes(writer: StoreWriter(store: store), metrics: ServerMetrics(), plugins: { [] }, isReady: { true })
        let settings = AddressAllocator.Settings(clusterCIDR: IPv4Network(clusterCIDR)!, serviceCIDR: IPv4Network(serviceCIDR)!, nodeMaskSize: 24)
        routes.addresses = AddressAllocator(settings: settings) { key in
            AddressAllocator.owners(of: ["Node", "Service"].flatMap { (try? store.list(kind: $0).items) ?? [] })[key]
        }
        routes.cluster = ClusterInfo(clusterCIDR: clusterCIDR, serviceCIDR: serviceCIDR, clusterDomain: "capstan.local")
        let app = Application(router: routes.router())
        try await app.test(.router) { client in try await body(APIRoutesTests.Client(client: client, token: admin), store) }
    }

    static func service(_ name: String, clusterIP: String? = nil) -> String {
        """
        apiVersion: capstan.dev/v1
        kind: Service
        metadata: {name: \(name)}
        spec:
          selector: {app: \(name)}
          ports: [{name: http, port: 80, targetPort: http}]
        \(clusterIP.map { "  clusterIP: \"\($0)\"" } ?? "")
        """
    }

    func write(_ client: APIRoutesTests.Client, _ yaml: String, method: HTTPRequest.Method = .post, name: String? = nil, plural: String = "services") async throws -> (HTTPResponse.Status, AnyResource?, String) {
        try await client.execute(uri: "/v1/\(plural)" + (name.map { "/\($0)" } ?? ""), method: method, headers: APIRoutesTests.yaml, body: ByteBuffer(string: yaml)) { response in
            let text = String(buffer: response.body)
            return (response.status, try? JSONDecoder().decode(AnyResource.self, from: Data(text.utf8)), text)
        }
    }

    @Test func servicesGetAVirtualIPThatSurvivesApplies() async throws {
        try await withAPI { client, _ in
            let (status, first, _) = try await write(client, Self.service("backend"))
            #expect(status == .created)
            guard case .service(let backend)? = first else { Issue.record("no service back"); return }
            #expect(backend.spec.clusterIP == "10.96.0.1")
            let (_, second, _) = try await write(client, Self.service("web"))
            guard case .service(let web)? = second else { Issue.record("no service back"); return }
            #expect(web.spec.clusterIP == "10.96.0.2")
            // Applied again without clusterIP: it keeps its address.
            let (again, kept, _) = try await write(client, Self.service("backend"), method: .put, name: "backend")
            #expect(again == .ok)
            guard case .service(let same)? = kept else { Issue.record("no service back"); return }
            #expect(same.spec.clusterIP == "10.96.0.1")
            // Moving it, taking another's, or one outside the CIDR: 422 naming spec.clusterIP.
            let (moved, _, movedText) = try await write(client, Self.service("backend", clusterIP: "10.96.0.9"), method: .put, name: "backend")
            #expect(moved == .unprocessableContent)
            #expect(movedText.contains("spec.clusterIP") && movedText.contains("cannot change"))
            let (taken, _, takenText) = try await write(client, Self.service("other", clusterIP: "10.96.0.2"))
            #expect(taken == .unprocessableContent)
            #expect(takenText.contains("already the address of service \\\"web\\\""), "\(takenText)")
            let (outside, _, outsideText) = try await write(client, Self.service("far", clusterIP: "10.97.0.2"))
            #expect(outside == .unprocessableContent)
            #expect(outsideText.contains("not in the service CIDR"))
            // A free address asked for, and a headless service (no address).
            let (chosen, chosenObject, _) = try await write(client, Self.service("chosen", clusterIP: "10.96.3.3"))
            #expect(chosen == .created)
            if case .service(let service)? = chosenObject { #expect(service.spec.clusterIP == "10.96.3.3") }
            let (headless, headlessObject, _) = try await write(client, Self.service("peers", clusterIP: "None"))
            #expect(headless == .created)
            if case .service(let service)? = headlessObject { #expect(service.spec.isHeadless) }
        }
    }

    @Test func aFullServiceCIDRIsAClearError() async throws {
        // A /30 holds two usable addresses.
        try await withAPI(serviceCIDR: "10.96.0.0/30") { client, _ in
            #expect(try await write(client, Self.service("a")).0 == .created)
            #expect(try await write(client, Self.service("b")).0 == .created)
            let (status, _, text) = try await write(client, Self.service("c"))
            #expect(status == .unprocessableContent)
            #expect(text.contains("has no free address left"), "\(text)")
        }
    }

    @Test func nodesGetPodSubnetsThatClientsCannotMove() async throws {
        try await withAPI(clusterCIDR: "10.244.0.0/23") { client, store in
            func node(_ name: String, podCIDR: String? = nil) -> String {
                "apiVersion: capstan.dev/v1\nkind: Node\nmetadata: {name: \(name)}\nspec: {\(podCIDR.map { "podCIDR: \($0)" } ?? "")}\n"
            }
            let (_, a, _) = try await write(client, node("a"), plural: "nodes")
            let (_, b, _) = try await write(client, node("b"), plural: "nodes")
            guard case .node(let first)? = a, case .node(let second)? = b else { Issue.record("no nodes back"); return }
            #expect(first.spec.podCIDR == "10.244.0.0/24")
            #expect(second.spec.podCIDR == "10.244.1.0/24")
            // The /23 holds two /24s: a third node registers without one.
            let (status, c, _) = try await write(client, node("c"), plural: "nodes")
            #expect(status == .created)
            if case .node(let third)? = c { #expect(third.spec.podCIDR == nil) }
            // A client may not set or move a subnet.
            #expect(try await write(client, node("d", podCIDR: "10.244.0.0/24"), plural: "nodes").0 == .forbidden)
            #expect(try await write(client, node("a", podCIDR: "10.244.1.0/24"), method: .put, name: "a", plural: "nodes").0 == .forbidden)
            // Applied again without it, it keeps it.
            _ = try await write(client, node("a"), method: .put, name: "a", plural: "nodes")
            guard case .node(let stored)? = try store.get(kind: "Node", name: "a") else { Issue.record("node a is gone"); return }
            #expect(stored.spec.podCIDR == "10.244.0.0/24")
            // Agents learn the plan.
            try await client.execute(uri: "/v1/cluster", method: .get) { response in
                let info = try JSONDecoder().decode(ClusterInfo.self, from: Data(response.body.readableBytesView))
                #expect(info == ClusterInfo(clusterCIDR: "10.244.0.0/23", serviceCIDR: "10.96.0.0/16", clusterDomain: "capstan.local"))
            }
        }
    }

    /// The address plan's flags are range-checked, so the allocators' scans stay bounded.
    @Test func theAddressPlanIsChecked() {
        func problems(_ cluster: String, _ service: String, mask: Int = 24) -> [String] {
            var options = ControlPlane.Options(dataDirectory: "")
            (options.clusterCIDR, options.serviceCIDR, options.nodeCIDRMaskSize) = (cluster, service, mask)
            return options.networkProblems()
        }
        #expect(problems("10.244.0.0/16", "10.96.0.0/16").isEmpty)
        #expect(problems("10.244.0.1/16", "10.96.0.0/16").first?.contains("--cluster-cidr") == true)
        #expect(problems("10.0.0.0/8", "10.96.0.0/16").contains { $0.contains("overlap") })
        #expect(problems("0.0.0.0/0", "192.168.0.0/16").contains { $0.contains("more than 65,536 node subnets") })
        #expect(problems("10.244.0.0/16", "0.0.0.0/0").contains { $0.contains("wider than /12") })
        #expect(problems("10.244.0.0/16", "10.96.0.0/31").contains { $0.contains("holds no service address") })
        #expect(problems("10.244.0.0/16", "10.96.0.0/16", mask: 31).contains { $0.contains("16-30") })
    }

    static func instance(_ name: String, labels: [String: String], ready: Bool, address: String?, ports: [PortSpec] = [PortSpec(name: "http", containerPort: 8080)], hostNetwork: Bool = false, bindings: [PortBinding] = []) -> AnyResource {
        var instance = Instance(name: name, labels: labels, spec: InstanceSpec(template: InstanceTemplate(command: ["true"], ports: ports)))
        instance.spec.nodeName = "n1"
        instance.status.phase = .running
        instance.status.ready = ready
        instance.status.addresses = address.map { [$0] } ?? []
        instance.status.hostNetwork = hostNetwork
        instance.status.ports = bindings
        return .instance(instance)
    }

    @Test func endpointsAreTheReadySelectedInstancesOnTheirTargetPort() throws {
        var spec = ServiceSpec(selector: ["app": "web"], ports: [ServicePort(name: "http", port: 80, targetPortName: "http"), ServicePort(name: "admin", port: 9000, targetPort: 9090)])
        spec.clusterIP = "10.96.0.5"
        let service = CapstanCore.Service(name: "web", spec: spec)
        let instances = [
            Self.instance("web-0", labels: ["app": "web"], ready: true, address: "10.244.0.2"),
            Self.instance("web-1", labels: ["app": "web"], ready: false, address: "10.244.0.3"),
            Self.instance("web-2", labels: ["app": "web", "extra": "x"], ready: true, address: "10.244.1.2"),
            Self.instance("db-0", labels: ["app": "db"], ready: true, address: "10.244.0.9"),
            // On the node's network: reached on the host port it was given.
            Self.instance("web-3", labels: ["app": "web"], ready: true, address: "192.0.2.7", hostNetwork: true, bindings: [PortBinding(containerPort: 8080, hostPort: 30001)]),
        ]
        let desired = EndpointsController.desired(for: service, instances: instances)
        let http = desired.addresses.filter { $0.portName == "http" }.map { "\($0.instance)=\($0.address):\($0.port)" }
        #expect(http == ["web-0=10.244.0.2:8080", "web-2=10.244.1.2:8080", "web-3=192.0.2.7:30001"])
        let admin = desired.addresses.filter { $0.portName == "admin" }.map { "\($0.instance):\($0.port)" }
        #expect(admin == ["web-0:9090", "web-2:9090", "web-3:9090"])
        #expect(desired.status.readyEndpoints == 3)
        #expect(desired.status.conditions.first?.reason == "ReadyEndpoints")
    }

    @Test func aServiceWithoutEndpointsSaysWhy() throws {
        func reason(_ instances: [AnyResource], port: ServicePort = ServicePort(name: "http", port: 80, targetPortName: "http")) -> (String?, String?) {
            let service = CapstanCore.Service(name: "web", spec: ServiceSpec(selector: ["app": "web"], ports: [port]))
            let condition = EndpointsController.desired(for: service, instances: instances).status.conditions.first
            return (condition?.reason, condition?.message)
        }
        let none = reason([Self.instance("db-0", labels: ["app": "db"], ready: true, address: "10.244.0.9")])
        #expect(none.0 == "NoMatchingInstances")
        #expect(none.1?.contains("app=web matches no instance") == true)
        #expect(reason([Self.instance("web-0", labels: ["app": "web"], ready: false, address: "10.244.0.2")]).0 == "NoReadyEndpoints")
        let unnamed = reason([Self.instance("web-0", labels: ["app": "web"], ready: true, address: "10.244.0.2", ports: [PortSpec(containerPort: 8080)])])
        #expect(unnamed.0 == "NoSuchPort")
        #expect(unnamed.1?.contains("no port named \"http\"") == true)
    }

    /// The controller on a real informer: endpoints follow readiness and deletion, and go with
    /// their service.
    @Test func theControllerFollowsReadinessAndDeletion() async throws {
        let store = try ResourceStore(path: directory + "/controller.db", bus: EventBus())
        let writer = StoreWriter(store: store)
        let informer = SharedInformer(writer: StoreWriter(store: store))
        let controller = EndpointsController(writer: writer, informer: informer)
        let services = Task { try await informer.run() }
        let loop = Task { try await controller.run() }
        defer { services.cancel(); loop.cancel() }
        func addresses() -> [String] {
            guard case .endpoints(let endpoints)? = try? store.get(kind: "Endpoints", name: "web") else { return ["<none>"] }
            return endpoints.spec.addresses.map(\.instance)
        }
        var spec = ServiceSpec(selector: ["app": "web"], ports: [ServicePort(name: "http", port: 80, targetPortName: "http")])
        spec.clusterIP = "10.96.0.5"
        _ = try await writer.create(.service(CapstanCore.Service(name: "web", spec: spec)))
        _ = try await writer.create(Self.instance("web-0", labels: ["app": "web"], ready: true, address: "10.244.0.2"))
        _ = try await writer.create(Self.instance("web-1", labels: ["app": "web"], ready: true, address: "10.244.0.3"))
        try await waitUntil("both are endpoints") { addresses() == ["web-0", "web-1"] }
        // web-1 stops being ready: it leaves at once.
        guard case .instance(var web1)? = try store.get(kind: "Instance", name: "web-1") else { return }
        web1.status.ready = false
        let started = ContinuousClock.now
        _ = try await writer.update(.instance(web1))
        try await waitUntil("web-1 leaves") { addresses() == ["web-0"] }
        let took = ContinuousClock.now - started
        // On a change, not a resync (which comes after 30 s); under the full suite's load it
        // can take a second or more.
        #expect(took < .seconds(15), "took \(took)")
        _ = try await writer.delete(kind: "Instance", name: "web-0")
        try await waitUntil("web-0 leaves when deleted") { addresses() == [] }
        try await waitUntil("the service says why it has none") {
            guard case .service(let service)? = try? store.get(kind: "Service", name: "web") else { return false }
            return service.status.conditions.first?.reason == "NoReadyEndpoints" && service.status.readyEndpoints == 0
        }
        _ = try await writer.delete(kind: "Service", name: "web")
        try await waitUntil("the endpoints go with their service") { addresses() == ["<none>"] }
    }

    func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<200 {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("timed out waiting until \(what)")
    }
}
