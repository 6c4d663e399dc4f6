import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import PluginHost
import ServiceLifecycle
import Synchronization

/// `capstan agent`: one per machine. Registers its Node (detected cpu and memory, labels),
/// heartbeats, watches the instances bound to it and runs each through an
/// ``InstanceSupervisor``; serves their logs and its plugin list over HTTP.
///
/// After a restart it **re-adopts**: what the runtimes still run (`list()`, matched by the
/// instance's name and uid labels) is supervised again without a restart; runtime instances no
/// bound instance claims are orphans and are stopped and removed.
public final class NodeAgent: Sendable {
    public struct Options: Sendable {
        public var nodeName: String
        public var labels: [String: String]
        /// Where the agent's own HTTP endpoint listens (logs); port 0 picks one.
        public var listenHost: String
        public var listenPort: Int
        public var heartbeatInterval: Duration
        /// The node token the agent presents to the API (`capstan token create --role node
        /// --node NAME`).
        public var token: String?
        /// For an `https://` server: the cluster CA, the only one the agent trusts.
        public var caPEM: String?
        /// The node's certificate and key: with one, the agent serves its endpoint over TLS and
        /// lets in only clients with a certificate of the cluster CA (the server).
        public var identity: TLSIdentity?
        /// Answer DNS for service names on the pod gateway address (when the network plugin
        /// gives instances namespaces of their own).
        public var clusterDNS = true
        /// Where cluster DNS forwards other names (`host[:port]`); nil: the node's resolv.conf.
        public var dnsUpstreams: [String]?

        public init(nodeName: String? = nil, labels: [String: String] = [:], listenHost: String = "127.0.0.1", listenPort: Int = 0, heartbeatInterval: Duration = .seconds(10), token: String? = nil) {
            self.token = token
            self.nodeName = nodeName ?? NodeResources.defaultNodeName()
            self.labels = labels
            self.listenHost = listenHost
            self.listenPort = listenPort
            self.heartbeatInterval = heartbeatInterval
        }
    }

    public let options: Options
    public let plugins: PluginHost
    private let server: @Sendable () async -> String?
    private let supervisors = Mutex<[String: InstanceSupervisor]>([:])
    /// When the node's lease was last renewed, and whether the agent fenced itself since.
    private let renewal = Mutex<(last: ContinuousClock.Instant?, fenced: Bool)>((nil, false))
    /// Which instances use which volumes here (stage before the first publish, unstage after the last).
    private let volumeUsage = VolumeUsage()
    private let agentAddress = Mutex<String?>(nil)
    private let addressReady = AsyncStream<String>.makeStream()
    /// Stops in progress: each runs in a child task of the agent's loop, so a grace period of
    /// one instance never holds up the watch (or another instance's stop).
    private let terminations = AsyncStream<@Sendable () async -> Void>.makeStream()
    private let stopping = StopBarrier()
    /// Services, endpoints and nodes as this agent follows them (set once registered).
    private let networkSync = Mutex<NetworkSync?>(nil)
    /// The cluster DNS resolv.conf instances in their own namespace get.
    private let resolvConf = Mutex<String?>(nil)
    /// The cluster DNS server this agent started, if any (stopped when the agent stops).
    private let clusterDNS = Mutex<ClusterDNS?>(nil)
    private let logger: Logger

    /// - Parameter server: the API's address (`http://host:port`); asked once, at start; nil
    ///   when cancelled before it is known.
    public init(options: Options, plugins: PluginHost, logger: Logger, server: @escaping @Sendable () async -> String?) {
        self.options = options
        self.plugins = plugins
        self.server = server
        self.logger = logger
    }

    public func services() -> [any ServiceLifecycle.Service] {
        let routes = AgentRoutes(nodeName: options.nodeName, plugins: plugins, runtimeFor: { [self] name in runtime(forInstance: name) })
        var server: HTTPServerBuilder = .http1()
        if let identity = options.identity, let tls = try? identity.serverConfiguration(clientCertificates: .required),
           let builder = try? HTTPServerBuilder.tls(.http1(), configuration: TLSChannelConfiguration(tlsConfiguration: tls, customAsyncVerificationCallback: { chain in
               // Only the cluster's server: not any certificate of the CA (other nodes hold one).
               TLSIdentity.isServer(chain, caPEM: identity.caPEM) ? .certificateVerified : .failed
           })) {
            server = builder
        }
        let scheme = options.identity == nil ? "http" : "https"
        let app = Application(
            router: routes.router(),
            server: server,
            configuration: .init(address: .hostname(options.listenHost, port: options.listenPort), serverName: "capstan-agent"),
            onServerRunning: { [self] channel in
                let host = options.listenHost.contains(":") ? "[\(options.listenHost)]" : options.listenHost
                let address = "\(scheme)://\(host):\(channel.localAddress?.port ?? options.listenPort)"
                agentAddress.withLock { $0 = address }
                addressReady.continuation.yield(address)
                addressReady.continuation.finish()
            },
            logger: logger
        )
        return [app, AgentLoop(agent: self)]
    }

    // MARK: Run

    func run() async throws {
        var ownAddress: String?
        for await address in addressReady.stream { ownAddress = address }
        // Cancelled before either endpoint listened (the group is shutting down).
        guard ownAddress != nil, let serverAddress = await server() else { return }
        // With a certificate of its own, the agent shows it to the server too: mutual TLS.
        let api = APIClient(server: serverAddress, token: options.token, caPEM: options.caPEM, identity: options.identity)
        let events = EventRecorder(writer: api, source: "agent/\(options.nodeName)")
        let node = try await register(api, address: ownAddress)
        logger.info("agent of node \(options.nodeName) registered with \(api.server), serving logs on \(ownAddress ?? "?")")
        let network = NetworkSync(api: api, nodeName: options.nodeName, plugins: plugins, events: events, logger: logger)
        networkSync.withLock { $0 = network }
        defer { clusterDNS.withLock { $0?.stop() } }
        try await withThrowingDiscardingTaskGroup { group in
            // The lease first, on its own: a slow network set-up (a plugin's configure, the
            // cluster's address plan) must not leave a registered node without a heartbeat.
            group.addTask { await self.heartbeat(api) }
            group.addTask { await self.fenceWhenCutOff(api, events: events) }
            group.addTask {
                await network.start(node: node)
                let started = self.startDNS(node: node, network: network, domain: await network.info?.clusterDomain)
                self.clusterDNS.withLock { $0 = started }
                self.resolvConf.withLock { $0 = started?.resolvConf }
                // Instances start once their network and resolv.conf are known.
                await withDiscardingTaskGroup { followers in
                    followers.addTask { await network.run() }
                    followers.addTask { await self.follow(api, events: events) }
                }
            }
            group.addTask { await StorageSync(api: api, plugins: self.plugins, nodeName: self.options.nodeName, events: events, logger: self.logger, usage: self.volumeUsage,
                                      attacher: VolumeAttacher(api: api, plugins: self.plugins, nodeName: self.options.nodeName, directory: self.volumeDirectory, usage: self.volumeUsage, events: events)).run() }
            group.addTask {
                await withDiscardingTaskGroup { stops in
                    for await stop in self.terminations.stream { stops.addTask { await stop() } }
                }
            }
            try await gracefulShutdown()
            terminations.continuation.finish()
            group.cancelAll()
        }
        // Leave instances running: they outlive the agent and are re-adopted on its return.
        logger.info("agent of node \(options.nodeName) stopped; its instances keep running")
    }

    /// Cluster DNS on the pod gateway address, for a network plugin that isolates instances;
    /// nil (and said why) when it cannot listen — instances then keep the node's resolv.conf.
    private func startDNS(node: Node, network: NetworkSync, domain: String?) -> ClusterDNS? {
        guard options.clusterDNS, let domain, plugins.registry.network()?.capabilities.isolatedNamespaces == true,
              let subnet = node.spec.podCIDR.flatMap(IPv4Network.init), let gateway = subnet.address(at: 1) else { return nil }
        let directory = network.directory
        do {
            let dns = try ClusterDNS(address: gateway.description, domain: domain, upstreams: options.dnsUpstreams,
                                     directory: URL(fileURLWithPath: plugins.stateDirectory).appendingPathComponent("dns").path) { directory.lookup($0) }
            try dns.start()
            logger.info("cluster DNS for *.\(domain) on \(gateway):53, forwarding the rest to \(dns.upstreams.isEmpty ? "nobody" : dns.upstreams.joined(separator: ", "))")
            return dns
        } catch {
            logger.warning("cluster DNS not started: \(error); instances keep the node's resolv.conf")
            return nil
        }
    }

    /// Creates or updates this node's Node; returns it as stored (with the pod subnet the
    /// control plane gave it).
    private func register(_ api: APIClient, address: String?) async throws -> Node {
        let capacity = NodeResources.capacity()
        var labels = options.labels
        labels[WellKnown.hostnameLabel] = ProcessInfo.processInfo.hostName.lowercased()
        labels["capstan.dev/os"] = "linux"
        labels["capstan.dev/arch"] = NodeResources.architecture
        var backoff = Reconnect()
        while true {
            do {
                let now = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
                var status = NodeStatus(capacity: capacity, allocatable: capacity, addresses: [options.listenHost], ready: true, lastHeartbeat: now)
                let defaults = plugins.registry.defaults
                status.plugins = plugins.registry.entries.map {
                    NodePlugin(name: $0.name, kind: "\($0.kind)", library: $0.library, isDefault: defaults[$0.kind] == $0.name)
                }
                let stored: AnyResource
                if case .node(var node)? = try await api.fetch(kind: "Node", name: options.nodeName) {
                    node.metadata.labels.merge(labels) { _, new in new }
                    node.spec.agentAddress = address
                    node.status = status
                    stored = try await api.update(.node(node))
                } else {
                    stored = try await api.create(.node(Node(name: options.nodeName, labels: labels, spec: NodeSpec(agentAddress: address), status: status)))
                }
                guard case .node(let node) = stored else { throw CancellationError() }
                if node.spec.podCIDR == nil, plugins.registry.network()?.capabilities.isolatedNamespaces == true {
                    logger.warning("node \(options.nodeName) got no pod subnet: the cluster CIDR may be full; its instances cannot get addresses")
                }
                return node
            } catch let error as APIError where error.status == 0 || error.status == 409 || error.status >= 500 {
                // The server is not up yet (or restarting): keep trying, with capped backoff,
                // like the kubelet. Refusals (401, 403, 400) are not retried: they need a person.
                if error.status == 0 && backoff.attempt % 10 == 0 {
                    logger.warning("cannot reach the server to register node \(options.nodeName) (\(error)); retrying")
                }
                guard await backoff.pause() else { throw CancellationError() }
            }
        }
    }

    /// Renews the node's ``Lease`` every heartbeat: one small compare-and-swap write, not a
    /// read and rewrite of the whole Node (whose status the agent writes only when it changes:
    /// at registration). A conflict or a missing lease reads or creates it again; while the
    /// server is unreachable, the next beat simply tries again.
    private func heartbeat(_ api: APIClient) async {
        var lease: Lease?
        let interval = Double(options.heartbeatInterval.components.seconds) + Double(options.heartbeatInterval.components.attoseconds) / 1e18
        let duration = min(max(4 * interval, 1), FieldLimits.maxSeconds)
        var retried = false
        var held = false
        logger.info("node \(options.nodeName) renews its lease every \(interval) s")
        while !Task.isCancelled {
            let now = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
            do {
                if var current = lease {
                    current.spec.renewTime = now
                    guard case .lease(let stored) = try await api.update(.lease(current)) else { break }
                    lease = stored
                } else if case .lease(var existing)? = try await api.fetch(kind: "Lease", name: options.nodeName) {
                    existing.spec = LeaseSpec(holderIdentity: "node/\(options.nodeName)", leaseDurationSeconds: duration, renewTime: now)
                    guard case .lease(let stored) = try await api.update(.lease(existing)) else { break }
                    lease = stored
                } else {
                    let fresh = Lease(name: options.nodeName, spec: LeaseSpec(holderIdentity: "node/\(options.nodeName)", leaseDurationSeconds: duration, renewTime: now))
                    guard case .lease(let stored) = try await api.create(.lease(fresh)) else { break }
                    lease = stored
                }
                retried = false
                if !held {
                    held = true
                    logger.info("node \(options.nodeName) holds its lease")
                }
                let wasFenced = renewal.withLock { state -> Bool in
                    let fenced = state.fenced
                    state = (ContinuousClock.now, false)
                    return fenced
                }
                if wasFenced { await resumeAfterFence(api) }
            } catch let error as APIError where (error.status == 409 || error.status == 404) && !retried {
                // Someone else wrote it (or it was deleted): read it again at once, once.
                lease = nil
                retried = true
                continue
            } catch {
                lease = nil
                retried = false
                if Task.isCancelled { return }
                logger.warning("could not renew the lease of node \(options.nodeName): \(error)")
            }
            try? await Task.sleep(for: options.heartbeatInterval)
        }
    }

    /// **Self-fencing** (issue 13). A node whose lease the server has not seen renewed for its
    /// node timeout plus its eviction timeout has its instances replaced elsewhere. An agent cut
    /// off from the server (a partition, not a crash) would go on running them: two copies. So
    /// the agent stops every instance once it has not renewed for two thirds of that time —
    /// before the server replaces them — and, once it renews again, restarts those the server
    /// still binds to it (the others were replaced: they stay stopped). Off when the server does
    /// not say its timeouts.
    private func fenceWhenCutOff(_ api: APIClient, events: EventRecorder) async {
        var limit: Duration?
        while !Task.isCancelled, limit == nil {
            if let info = try? await api.cluster(), let node = info.nodeTimeoutSeconds, let eviction = info.evictionTimeoutSeconds,
               (node + eviction).isFinite, node + eviction > 0 {
                limit = .milliseconds(Int64(min(node + eviction, FieldLimits.maxSeconds) * 2000 / 3))
                break
            }
            try? await Task.sleep(for: options.heartbeatInterval)
        }
        guard let limit else { return }
        while !Task.isCancelled {
            // A cheap check (one lock): often, so the fence comes well before the eviction.
            try? await Task.sleep(for: .milliseconds(100))
            let cutOff = renewal.withLock { state -> Bool in
                guard !state.fenced, let last = state.last, ContinuousClock.now - last >= limit else { return false }
                state.fenced = true
                return true
            }
            guard cutOff else { continue }
            let names = supervisors.withLock { Array($0.keys) }
            logger.warning("node \(options.nodeName) has not renewed its lease for \(limit): the server replaces its instances soon; stopping \(names.count) instance(s) so none runs twice")
            for name in names { await forget(name) }
        }
    }

    /// After a fence: the instances the server still binds here start again.
    private func resumeAfterFence(_ api: APIClient) async {
        logger.info("node \(options.nodeName) renewed its lease again after fencing itself; restarting the instances still bound here")
        guard let list = try? await api.list(.instance, query: ["nodeName": options.nodeName]) else { return }
        let events = EventRecorder(writer: api, source: "agent/\(options.nodeName)")
        for case .instance(let instance) in list.items { await sync(instance, deleted: false, api: api, events: events) }
    }

    /// List, re-adopt, then watch; on any break, list again.
    private func follow(_ api: APIClient, events: EventRecorder) async {
        var first = true
        var backoff = Reconnect()
        while !Task.isCancelled {
            do {
                let list = try await api.list(.instance, query: ["nodeName": options.nodeName])
                var bound: [String: Instance] = [:]
                for case .instance(let instance) in list.items { bound[instance.metadata.name] = instance }
                if first {
                    await adopt(bound, api: api, events: events)
                    first = false
                }
                for instance in bound.values { await sync(instance, deleted: false, api: api, events: events) }
                for name in supervisors.withLock({ Array($0.keys) }) where bound[name] == nil {
                    await forget(name)
                }
                let stream = try await api.watch(.instance, after: list.revision, query: ["nodeName": options.nodeName])
                backoff.reset()
                for try await event in stream {
                    guard let object = event.object, case .instance(let instance) = object else {
                        if event.type == .resync { break }
                        continue
                    }
                    await sync(instance, deleted: event.type == .deleted, api: api, events: events)
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("instance watch broke (\(error)); listing again")
            }
            // 0.5 s after a watch that ran; then 1 s, 2 s … at most 30 s while the server
            // stays away.
            guard await backoff.pause() else { return }
        }
    }

    /// Matches what the runtimes run with the bound instances; removes orphans.
    private func adopt(_ bound: [String: Instance], api: APIClient, events: EventRecorder) async {
        var adopted = Set<String>()
        for entry in plugins.registry.entries where entry.kind == .runtime {
            guard let runtime = plugins.registry.runtime(named: entry.name), let running = try? await runtime.list() else { continue }
            for status in running {
                guard let name = status.labels[WellKnown.instanceLabel] else { continue }
                if let instance = bound[name], instance.metadata.uid == status.labels[WellKnown.uidLabel],
                   instance.metadata.deletionTimestamp == nil, runtimeName(for: instance) == entry.name {
                    let supervisor = makeSupervisor(instance, api: api, events: events)
                    adopted.insert(name)
                    await supervisor.launch(adopting: status)
                    logger.info("re-adopted \(name) (\(status.state.rawValue), pid \(status.pid.map(String.init) ?? "-"))")
                } else {
                    logger.info("removing orphan \(status.id) from runtime \(entry.name)")
                    _ = try? await runtime.stop(StopInstanceRequest(id: status.id, gracePeriod: 5))
                    try? await runtime.remove(status.id)
                }
            }
        }
        // Before any instance starts (sync comes next), so nothing new is mistaken for garbage.
        await collectNetworkGarbage(keeping: adopted)
    }

    /// After a restart: network attachments and namespaces whose instance is gone (it was
    /// deleted while the agent was away, or the node rebooted) are detached and removed —
    /// veths, address leases, port mappings, namespace files. Those of adopted instances stay.
    private func collectNetworkGarbage(keeping adopted: Set<String>) async {
        guard let network = plugins.registry.network() else { return }
        let namespaces = NetworkNamespaces(nodeName: options.nodeName)
        var stale = Set(namespaces.instances())
        if let inventory = network as? any NetworkInventory, let held = try? await inventory.attachedInstances() { stale.formUnion(held) }
        stale.subtract(adopted)
        for name in stale.sorted() {
            let path = namespaces.path(for: name)
            do {
                try await network.detach(NetworkDetachRequest(instanceID: name, namespacePath: NetworkNamespaces.isNamespace(path) ? path : nil))
                logger.info("removed the network attachment of \(name), which no longer runs here")
            } catch {
                logger.warning("could not detach stale network attachment of \(name): \(error)")
            }
            namespaces.remove(for: name)
        }
    }

    /// Brings one instance's supervision in line with its stored state.
    private func sync(_ instance: Instance, deleted: Bool, api: APIClient, events: EventRecorder) async {
        let name = instance.metadata.name
        let existing = supervisors.withLock { $0[name] }
        if deleted || instance.spec.nodeName != options.nodeName {
            await forget(name)
            return
        }
        if let existing, existing.uid != instance.metadata.uid {
            await forget(name)
        } else if let existing {
            await existing.observe(instance)
        }
        if instance.metadata.deletionTimestamp != nil {
            let supervisor = supervisors.withLock { $0.removeValue(forKey: name) }
            let logger = self.logger
            stopping.begin(name)
            terminations.continuation.yield { [stopping] in
                await supervisor?.shutdown()
                stopping.end(name)
                do {
                    _ = try await api.delete(.instance, name, force: true)
                } catch let error as APIError where error.status == 404 {
                } catch {
                    logger.warning("could not remove instance \(name): \(error)")
                }
            }
            return
        }
        if supervisors.withLock({ $0[name] }) == nil {
            // Stored before a range it breaks was checked: not run, and said so; the agent goes on
            // with the others.
            let problems = instance.validate()
            guard problems.isEmpty else {
                var failed = instance
                failed.status.phase = .failed
                failed.status.reason = "InvalidSpec"
                failed.status.message = problems.map(\.description).joined(separator: "; ")
                if failed.status != instance.status {
                    _ = try? await api.updateStatus(.instance(failed))
                    await events.record("Instance/\(name)", reason: "InvalidSpec", message: "not started: \(failed.status.message ?? "")", type: .warning)
                }
                return
            }
            guard plugins.registry.runtime(named: runtimeName(for: instance)) != nil else {
                var failed = instance
                failed.status.phase = .failed
                failed.status.reason = "NoRuntime"
                failed.status.message = "runtime \"\(runtimeName(for: instance))\" is not loaded on node \(options.nodeName)"
                if failed.status != instance.status { _ = try? await api.updateStatus(.instance(failed)) }
                return
            }
            if let problem = namespaceProblem(runtime: runtimeName(for: instance)) {
                var failed = instance
                failed.status.phase = .failed
                failed.status.reason = "RuntimeTooOld"
                failed.status.message = problem
                if failed.status != instance.status {
                    _ = try? await api.updateStatus(.instance(failed))
                    await events.record("Instance/\(name)", reason: "RuntimeTooOld", message: problem, type: .warning)
                }
                return
            }
            if instance.status.phase == .succeeded || instance.status.phase == .failed { return }
            let supervisor = makeSupervisor(instance, api: api, events: events)
            await supervisor.launch(adopting: nil, after: stopping)
        }
    }

    /// Why the runtime cannot run instances of an isolating network plugin: built against an
    /// SDK before 1.4, it does not read `networkNamespace` and would run them on the node's
    /// network while their status shows an address of their own. nil when it can.
    private func namespaceProblem(runtime name: String) -> String? {
        guard plugins.registry.network()?.capabilities.isolatedNamespaces == true,
              let library = plugins.registry.entries.first(where: { $0.kind == .runtime && $0.name == name })?.library,
              let version = plugins.reports.first(where: { $0.path == library })?.sdkVersion else { return nil }
        let parts = version.split(separator: ".").compactMap { Int($0) }
        guard parts.count == 2, parts[0] == 1, parts[1] < 4 else { return nil }
        return "runtime \"\(name)\" was built against SDK \(version), which cannot run an instance in its own network namespace; the \(plugins.registry.defaults[.network] ?? "network") plugin needs a runtime built against SDK 1.4 or newer"
    }

    private func makeSupervisor(_ instance: Instance, api: APIClient, events: EventRecorder) -> InstanceSupervisor {
        let runtimeName = runtimeName(for: instance)
        let volumes = VolumeAttacher(api: api, plugins: plugins, nodeName: options.nodeName, directory: volumeDirectory, usage: volumeUsage, events: events)
        let supervisor = InstanceSupervisor(instance: instance, runtime: plugins.registry.runtime(named: runtimeName)!, runtimeName: runtimeName,
                                            network: plugins.registry.network(), volumes: volumes, api: api, events: events, probeHost: "127.0.0.1",
                                            namespaces: NetworkNamespaces(nodeName: options.nodeName), resolvConf: resolvConf.withLock { $0 }, services: networkSync.withLock { $0 })
        supervisors.withLock { $0[instance.metadata.name] = supervisor }
        return supervisor
    }

    /// Stops and removes an instance this agent supervises (in the background, see
    /// `terminations`).
    private func forget(_ name: String) async {
        guard let supervisor = supervisors.withLock({ $0.removeValue(forKey: name) }) else { return }
        stopping.begin(name)
        terminations.continuation.yield { [stopping] in
            await supervisor.shutdown()
            stopping.end(name)
        }
    }

    /// Where instances' volumes are published.
    private var volumeDirectory: URL {
        URL(fileURLWithPath: plugins.stateDirectory).appendingPathComponent("volumes")
    }

    private func runtimeName(for instance: Instance) -> String {
        instance.spec.template.runtime ?? plugins.registry.defaults[.runtime] ?? "process"
    }

    func runtime(forInstance name: String) -> (any RuntimePlugin)? {
        if let supervisor = supervisors.withLock({ $0[name] }) { return supervisor.runtime }
        return plugins.registry.runtime()
    }
}

/// The agent's control loop as a service.
struct AgentLoop: ServiceLifecycle.Service {
    let agent: NodeAgent
    func run() async throws { try await agent.run() }
}
