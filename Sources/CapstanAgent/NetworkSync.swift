import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
import Logging
import PluginHost
import Synchronization

/// The agent's side of cluster networking, like kube-proxy plus the node half of a CNI
/// daemon: it follows Nodes, Services and Endpoints (list, then watch; relist on any break) and
/// - tells the network plugin (``NetworkTopology``) this node's pod subnet and every other
///   node's, so it can route to them;
/// - programs every Service's virtual IP and ready endpoints into the load-balancer plugin the
///   Service names (the configured default otherwise) — a change to one service programs that
///   service only; the whole set is synchronized at start and every minute;
/// - keeps the service table the instances' environment (`<NAME>_SERVICE_HOST`) and the
///   cluster DNS answer from.
actor NetworkSync {
    let api: APIClient
    let nodeName: String
    let plugins: PluginHost
    let events: EventRecorder
    let logger: Logger
    private(set) var info: ClusterInfo?
    private var nodes: [String: Node] = [:]
    private var services: [String: CapstanCore.Service] = [:]
    private var endpoints: [String: Endpoints] = [:]
    private var listed: Set<String> = []
    /// What each load-balancer plugin was last given, by program name.
    private var programmed: [String: [String: ProgramServiceRequest]] = [:]
    private var configured: ClusterNetwork?
    /// Warnings already recorded (service → reason), so a standing problem is said once.
    private var warned: [String: String] = [:]
    /// Data planes emptied while there was nothing to hold (see ``synchronizeAll()``).
    private var emptied: Set<String> = []
    static let resyncPeriod = Duration.seconds(60)
    /// What cluster DNS answers, kept current with every change (read from its own thread).
    nonisolated let directory = ServiceDirectory()
    /// Services changed since the worker last programmed (nil inside: everything).
    private var pending: Set<String>? = []
    private var networkChanged = false
    /// The last configure failed: the resync tries it again.
    private var retryNetwork = false
    /// Wakes the one worker that programs plugins, so their calls never interleave.
    private let wake = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    init(api: APIClient, nodeName: String, plugins: PluginHost, events: EventRecorder, logger: Logger) {
        (self.api, self.nodeName, self.plugins, self.events, self.logger) = (api, nodeName, plugins, events, logger)
    }

    /// Learns the address plan and this node's subnet, and configures the network plugin
    /// before any instance is attached.
    func start(node: Node) async {
        nodes[node.metadata.name] = node
        do {
            info = try await api.cluster()
        } catch {
            logger.warning("could not read the cluster's address plan (GET /v1/cluster): \(error); instances get no service addresses until it is known")
        }
        await configureNetwork()
    }

    /// Follows the three kinds until cancelled.
    func run() async {
        await withDiscardingTaskGroup { group in
            for kind in ["Node", "Service", "Endpoints"] {
                group.addTask { await self.follow(kind) }
            }
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: Self.resyncPeriod)
                    await self.resync()
                }
            }
            group.addTask { await self.work() }
        }
    }

    /// Every service with a virtual IP: `(name, clusterIP, ports)`, for instance environments.
    func serviceTable() -> [(name: String, clusterIP: String, ports: [ServicePort])] {
        services.values.compactMap { service in
            guard let ip = service.spec.clusterIP, !service.spec.isHeadless else { return nil }
            return (service.metadata.name, ip, service.spec.ports)
        }
    }

    /// `name` → addresses, for DNS: the virtual IP, or a headless service's ready endpoints.
    func resolve(_ name: String) -> [String]? {
        guard let service = services[name] else { return nil }
        if service.spec.isHeadless {
            return Array(Set((endpoints[name]?.spec.addresses ?? []).filter(\.ready).map(\.address))).sorted()
        }
        return service.spec.clusterIP.map { [$0] }
    }

    // MARK: Following

    private func follow(_ kind: String) async {
        guard let resource = ResourceKind.kind(kind) else { return }
        var backoff = Reconnect()
        while !Task.isCancelled {
            do {
                let list = try await api.list(resource)
                replace(kind, with: list.items)
                listed.insert(kind)
                changed(kind: kind, names: nil)
                let stream = try await api.watch(resource, after: list.revision)
                backoff.reset()
                for try await event in stream {
                    guard let object = event.object else {
                        if event.type == .resync { break }
                        continue
                    }
                    apply(object, deleted: event.type == .deleted)
                    changed(kind: kind, names: [object.name])
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("\(kind) watch broke (\(error)); listing again")
            }
            guard await backoff.pause() else { return }
        }
    }

    private func replace(_ kind: String, with items: [AnyResource]) {
        switch kind {
        case "Node": nodes = [:]
        case "Service": services = [:]
        default: endpoints = [:]
        }
        for item in items { apply(item, deleted: false) }
        directory.replace(services.keys.reduce(into: [:]) { table, name in table[name] = resolve(name) })
    }

    private func apply(_ object: AnyResource, deleted: Bool) {
        switch object {
        case .node(let node): nodes[node.metadata.name] = deleted ? nil : node
        case .service(let service): services[service.metadata.name] = deleted ? nil : service
        case .endpoints(let list): endpoints[list.metadata.name] = deleted ? nil : list
        default: break
        }
        if case .node = object { return }
        directory.replace(services.keys.reduce(into: [:]) { table, name in table[name] = resolve(name) })
    }

    /// The periodic pass: every service again, and the network plugin if it failed before.
    private func resync() {
        if retryNetwork {
            retryNetwork = false
            networkChanged = true
        }
        changed(kind: "Service", names: nil)
    }

    /// Notes what changed and wakes the worker.
    private func changed(kind: String, names: Set<String>?) {
        if kind == "Node" {
            networkChanged = true
        } else if let names {
            pending?.formUnion(names)
        } else {
            pending = nil
        }
        wake.continuation.yield()
    }

    /// The one task that calls the network and load-balancer plugins: whatever changed while
    /// it worked is handled in its next round.
    private func work() async {
        for await _ in wake.stream {
            if networkChanged {
                networkChanged = false
                // Not done: try again with the periodic resync.
                if !(await configureNetwork()) { retryNetwork = true }
            }
            guard listed.contains("Service"), listed.contains("Endpoints") else { continue }
            let names = pending
            pending = []
            if let names {
                if !names.isEmpty { await program(names) }
            } else {
                await synchronizeAll()
            }
        }
    }

    // MARK: The network plugin

    /// Gives the network plugin the node's subnet and its peers'. Returns false when it should
    /// be tried again (the address plan is not known yet, or the plugin failed).
    @discardableResult
    private func configureNetwork() async -> Bool {
        guard let topology = plugins.registry.network() as? any NetworkTopology else { return true }
        if info == nil { info = try? await api.cluster() }
        guard let info,
              let own = nodes[nodeName], let podCIDR = own.spec.podCIDR else { return info != nil }
        let peers = nodes.values.compactMap { node -> NetworkPeer? in
            guard node.metadata.name != nodeName, let cidr = node.spec.podCIDR, let address = Self.host(of: node) else { return nil }
            return NetworkPeer(nodeName: node.metadata.name, address: address, podCIDR: cidr)
        }.sorted { $0.nodeName < $1.nodeName }
        let wanted = ClusterNetwork(nodeName: nodeName, podCIDR: podCIDR, clusterCIDR: info.clusterCIDR, serviceCIDR: info.serviceCIDR, nodeAddress: Self.host(of: own), peers: peers)
        guard wanted != configured else { return true }
        do {
            try await topology.configure(wanted)
            configured = wanted
            logger.info("network: node subnet \(podCIDR), routes to \(peers.count) other node(s)")
            return true
        } catch {
            logger.error("the network plugin could not configure node \(nodeName) (subnet \(podCIDR)): \(error)")
            await events.record("Node/\(nodeName)", reason: "NetworkConfigureFailed", message: "\(error)", type: .warning)
            return false
        }
    }

    /// The host part of a node's agent address (`https://10.0.0.2:7071` → `10.0.0.2`).
    static func host(of node: Node) -> String? {
        guard let address = node.spec.agentAddress, let url = URL(string: address), let host = url.host, IPv4Address(host) != nil else { return nil }
        return host
    }

    // MARK: Load balancers

    /// What every load-balancer plugin should hold, by plugin name and program name.
    private func desiredPrograms(for names: Set<String>?) async -> [String: [String: ProgramServiceRequest]] {
        var result: [String: [String: ProgramServiceRequest]] = [:]
        let defaultName = plugins.registry.defaults[.loadBalancer]
        for service in services.values where names == nil || names!.contains(service.metadata.name) {
            let name = service.metadata.name
            guard let clusterIP = service.spec.clusterIP, !service.spec.isHeadless else { continue }
            let pluginName = service.spec.loadBalancer ?? defaultName ?? ""
            guard let plugin = plugins.registry.loadBalancer(named: pluginName) else {
                await warn(name, "LoadBalancerMissing", "load-balancer plugin \"\(pluginName)\" is not loaded on node \(nodeName); load it in capstan.yaml or name another in spec.loadBalancer")
                continue
            }
            let capabilities = plugin.capabilities
            if capabilities.dataPlane == .inProcess {
                await warn(name, "NoDataPlane", "load-balancer plugin \"\(pluginName)\" picks backends in process, and node \(nodeName) runs no proxy for it; use a data-plane plugin such as nftables")
                continue
            }
            if let algorithm = service.spec.algorithm, !capabilities.offeredAlgorithms.contains(algorithm) {
                await warn(name, "AlgorithmNotOffered", "load-balancer plugin \"\(pluginName)\" offers \(capabilities.offeredAlgorithms.joined(separator: ", ")), not \(algorithm)")
                continue
            }
            warned[name] = nil
            let addresses = endpoints[name]?.spec.addresses ?? []
            for port in service.spec.ports {
                let proto = port.protocol ?? "tcp"
                let backends = addresses.filter { $0.portName == port.name && ($0.protocol ?? "tcp") == proto }.map {
                    Backend(id: $0.instance, address: $0.address, port: $0.port, ready: $0.ready)
                }
                var request = ProgramServiceRequest(service: Self.programName(name, port), frontendAddress: clusterIP, frontendPort: port.port, backends: backends)
                request.protocol = proto
                request.algorithm = service.spec.algorithm
                result[pluginName, default: [:]][request.service] = request
            }
        }
        return result
    }

    /// `<service>:<port name or number>/<protocol>`: one frontend of a service.
    static func programName(_ service: String, _ port: ServicePort) -> String {
        "\(service):\(port.name ?? String(port.port))/\(port.protocol ?? "tcp")"
    }

    /// Programs the named services (their every port), and removes what they no longer have.
    private func program(_ names: Set<String>) async {
        let desired = await desiredPrograms(for: names)
        for (pluginName, held) in programmed {
            for (program, _) in held where names.contains(Self.serviceName(of: program)) && desired[pluginName]?[program] == nil {
                if await call(pluginName, program, { try await $0.removeService(program) }) { programmed[pluginName]?[program] = nil }
            }
        }
        for (pluginName, wanted) in desired {
            for (program, request) in wanted where programmed[pluginName]?[program] != request {
                // Recorded only once programmed: a failure is tried again on the next change
                // or resync, not forgotten.
                if await call(pluginName, program, { try await $0.program(request) }) {
                    programmed[pluginName, default: [:]][program] = request
                    emptied.remove(pluginName)
                }
            }
        }
    }

    /// Gives every load balancer its whole set in one call.
    private func synchronizeAll() async {
        guard listed.contains("Service"), listed.contains("Endpoints") else { return }
        let desired = await desiredPrograms(for: nil)
        var pluginNames = Set(desired.keys).union(programmed.keys)
        // A data plane that held services before an agent restart is emptied too.
        for entry in plugins.registry.entries where entry.kind == .loadBalancer { pluginNames.insert(entry.name) }
        for pluginName in pluginNames {
            guard let plugin = plugins.registry.loadBalancer(named: pluginName), plugin.capabilities.dataPlane != .inProcess else { continue }
            let all = Array((desired[pluginName] ?? [:]).values).sorted { $0.service < $1.service }
            let idle = all.isEmpty && (programmed[pluginName] ?? [:]).isEmpty
            // A data plane with nothing to hold is emptied once (what an earlier run left),
            // not every minute; and quietly: on a node without a single Service (or without
            // the privileges a kernel data plane needs) there is nothing to report.
            if idle && emptied.contains(pluginName) { continue }
            do {
                try await plugin.synchronize(all)
                programmed[pluginName] = desired[pluginName] ?? [:]
                if idle { emptied.insert(pluginName) }
            } catch where idle {
                emptied.insert(pluginName)
                logger.debug("load balancer \(pluginName) could not empty its data plane: \(error)")
            } catch {
                logger.error("load balancer \(pluginName) could not synchronize \(all.count) service ports: \(error)")
                await events.record("Node/\(nodeName)", reason: "LoadBalancerSyncFailed", message: "\(pluginName): \(error)", type: .warning)
            }
        }
    }

    static func serviceName(of program: String) -> String {
        String(program.prefix { $0 != ":" })
    }

    /// True when the plugin took it; a failure is an Event on the service.
    private func call(_ pluginName: String, _ program: String, _ body: (any LoadBalancerPlugin) async throws -> Void) async -> Bool {
        guard let plugin = plugins.registry.loadBalancer(named: pluginName) else { return false }
        do {
            try await body(plugin)
            return true
        } catch {
            let service = Self.serviceName(of: program)
            await warn(service, "ProgramFailed", "load balancer \(pluginName) on node \(nodeName) could not program \(program): \(error)")
            return false
        }
    }

    private func warn(_ service: String, _ reason: String, _ message: String) async {
        guard warned[service] != reason else { return }
        warned[service] = reason
        logger.warning("service \(service): \(message)")
        await events.record("Service/\(service)", reason: reason, message: message, type: .warning)
    }
}

/// Service name → addresses, as cluster DNS answers them; swapped whole on every change.
final class ServiceDirectory: Sendable {
    private let table = Mutex<[String: [String]]>([:])
    func replace(_ fresh: [String: [String]]) { table.withLock { $0 = fresh } }
    func lookup(_ name: String) -> [String]? { table.withLock { $0[name] } }
}
