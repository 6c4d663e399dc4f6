import AsyncHTTPClient
import CapstanAPI
import CapstanCore
import CapstanEtcd
import CapstanStore
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import PluginHost
import ServiceLifecycle
import Synchronization

/// Everything `capstan server` runs: the store (SQLite in the data directory), the HTTP API,
/// the scheduler loop and the workload controller, as services of one ``ServiceGroup``.
public final class ControlPlane: Sendable {
    public struct Options: Sendable {
        /// Where `capstan.db` lives.
        public var dataDirectory: String
        public var host: String
        /// 0 picks a free port; ``ControlPlane/address`` tells which once listening.
        public var port: Int
        /// Seconds without a heartbeat before a node is NotReady.
        public var heartbeatTimeout: Double
        /// Seconds a node may stay NotReady before its instances are removed (and replaced).
        public var evictionTimeout: Double
        /// Writes the server keeps for watches to resume from; older revisions answer 410.
        public var watchWindow: Int
        /// The most instances the cluster may hold (every workload's replicas plus instances of
        /// no workload); a write that would pass it is refused with 422.
        public var maxInstances: Int
        /// Open a store that is older than the revision its data directory last committed.
        public var acceptRollback: Bool
        /// Serve HTTPS with a certificate of the cluster CA (`<data-dir>/pki`).
        public var tls: Bool
        /// More names and addresses for the server's certificate (it always has localhost,
        /// 127.0.0.1, ::1, the listen address and the machine's host name).
        public var tlsHosts: [String]
        /// Nodes' pod subnets are cut from it (`--cluster-cidr`).
        public var clusterCIDR = "10.244.0.0/16"
        /// Services' virtual IPs come from it (`--service-cidr`).
        public var serviceCIDR = "10.96.0.0/16"
        /// The prefix length of each node's pod subnet (`--node-cidr-mask-size`).
        public var nodeCIDRMaskSize = 24
        /// Service names resolve under it.
        public var clusterDomain = "capstan.local"
        /// The members of the etcd cluster that holds the store (`--store etcd://…`); nil keeps
        /// it in SQLite in the data directory.
        public var etcdEndpoints: [String]? = nil
        /// With etcd: its CA and the client certificate shown to it (`--etcd-cafile` …); nil
        /// talks plain HTTP.
        public var etcdTLS: EtcdTLS? = nil
        /// With etcd: seconds a leader's lease lasts without renewal (the failover time).
        public var leaderTTL: Int64 = 2
        /// With etcd: this server's name among the others (default: host name and process id).
        public var serverName: String? = nil
        /// With etcd: how often the leader compacts etcd's history (keeping one period of it).
        public var compactionInterval: Duration = .seconds(300)

        /// Problems with the address plan: networks that do not parse, overlap, or cannot hold
        /// one node subnet.
        public func networkProblems() -> [String] {
            var problems: [String] = []
            let cluster = IPv4Network(clusterCIDR)
            let service = IPv4Network(serviceCIDR)
            if cluster == nil { problems.append("--cluster-cidr \"\(clusterCIDR)\" is not an IPv4 network such as 10.244.0.0/16 (no host bits set)") }
            if service == nil { problems.append("--service-cidr \"\(serviceCIDR)\" is not an IPv4 network such as 10.96.0.0/16 (no host bits set)") }
            if !(16...30).contains(nodeCIDRMaskSize) { problems.append("--node-cidr-mask-size \(nodeCIDRMaskSize) is not in 16-30") }
            if let cluster, cluster.prefixLength > nodeCIDRMaskSize { problems.append("--cluster-cidr \(clusterCIDR) is smaller than one node subnet (/\(nodeCIDRMaskSize))") }
            // Bounded, so handing out the next free one is a bounded scan: at most 65,536 node
            // subnets, at most 2^20 service addresses (Kubernetes' limit too).
            if let cluster, nodeCIDRMaskSize - cluster.prefixLength > 16 { problems.append("--cluster-cidr \(clusterCIDR) with --node-cidr-mask-size \(nodeCIDRMaskSize) makes more than 65,536 node subnets; use a longer prefix (at least /\(nodeCIDRMaskSize - 16))") }
            if let service, service.prefixLength > 30 { problems.append("--service-cidr \(serviceCIDR) holds no service address; use /30 or wider") }
            if let service, service.prefixLength < 12 { problems.append("--service-cidr \(serviceCIDR) is wider than /12 (1,048,576 addresses); use /12 to /30") }
            if let cluster, let service, cluster.overlaps(service) { problems.append("--cluster-cidr \(clusterCIDR) and --service-cidr \(serviceCIDR) overlap") }
            return problems
        }

        public init(dataDirectory: String, host: String = "127.0.0.1", port: Int = 7070, heartbeatTimeout: Double = 40, evictionTimeout: Double = 300, watchWindow: Int = 16_384, maxInstances: Int = 50_000, acceptRollback: Bool = false, tls: Bool = false, tlsHosts: [String] = []) {
            self.tls = tls
            self.tlsHosts = tlsHosts
            self.watchWindow = watchWindow
            self.maxInstances = maxInstances
            self.acceptRollback = acceptRollback
            self.dataDirectory = dataDirectory
            self.host = host
            self.port = port
            self.heartbeatTimeout = heartbeatTimeout
            self.evictionTimeout = evictionTimeout
        }
    }

    public let options: Options
    public let bus: EventBus
    public let writer: StoreWriter
    /// With etcd: the shared store and who leads.
    public let cluster: EtcdCluster?
    public let leadership: LeadershipState
    public let serverName: String
    public let plugins: PluginHost
    public let metrics = ServerMetrics()
    private let listening = Mutex<String?>(nil)
    /// The admin token of `<data-dir>/admin.token`, written to the CLI config once listening.
    private let adminToken: String?
    private let audit: AuditLog
    /// With TLS: the cluster CA and the server's certificate.
    public let ca: ClusterCA?
    public let identity: TLSIdentity?

    /// Opens the store (or connects to etcd). The plugins are the server's own (scheduler
    /// plugins run here).
    public init(options: Options, plugins: PluginHost) async throws(StoreError) {
        self.options = options
        self.plugins = plugins
        // The data directory holds the store, tokens and keys: the server's alone.
        try? FileManager.default.createDirectory(atPath: options.dataDirectory, withIntermediateDirectories: true)
        chmod(options.dataDirectory, 0o700)
        bus = EventBus(subscriberCapacity: 16_384, replayWindow: max(1, options.watchWindow))
        serverName = options.serverName ?? "\(ProcessInfo.processInfo.hostName.lowercased())-\(getpid())"
        if let endpoints = options.etcdEndpoints {
            // Every server of the cluster seals secrets with the same key: copy secrets.keys
            // into each server's data directory (docs/configuration.md).
            let cipher: SecretCipher
            do {
                cipher = try SecretCipher(path: URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("secrets.keys").path)
            } catch {
                throw .storage("\(error)")
            }
            let cluster = try await EtcdCluster(client: EtcdClient(endpoints: endpoints, tls: options.etcdTLS), cipher: cipher, bus: bus)
            self.cluster = cluster
            writer = StoreWriter(etcd: cluster)
            leadership = LeadershipState(server: serverName, leading: false)
        } else {
            cluster = nil
            writer = StoreWriter(store: try ResourceStore(path: URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("capstan.db").path, bus: bus, acceptRollback: options.acceptRollback))
            leadership = LeadershipState(server: serverName, leading: true)
        }
        audit = try AuditLog(path: URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("audit.log").path)
        if options.tls {
            let pki = URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("pki").path
            do {
                let ca = try ClusterCA.loadOrCreate(in: pki)
                let hosts = ["localhost", "127.0.0.1", "::1", options.host, ProcessInfo.processInfo.hostName.lowercased()] + options.tlsHosts
                self.ca = ca
                identity = try ca.serverIdentity(in: pki, hosts: hosts.filter { !$0.isEmpty && $0 != "0.0.0.0" && $0 != "::" })
            } catch {
                throw .storage("cannot set up TLS in \(pki): \(error)")
            }
        } else {
            ca = nil
            identity = nil
        }
        adminToken = try await Self.bootstrapAdminToken(writer: writer, file: URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("admin.token").path)
        // With etcd the leader writes them at the start of each term (ConfiguredStorageClasses).
        if cluster == nil { try await Self.keepConfiguredStorageClasses(plugins.storageClasses, in: writer) }
    }

    /// The owner of StorageClasses that come from capstan.yaml.
    static let configOwner = "Config"

    /// Stores the config's StorageClasses as written there (owner `Config`), and removes those it
    /// no longer names. A class of the same name made through the API is left alone. With etcd
    /// only the leader calls it, at the start of its term (``ConfiguredStorageClasses``).
    static func keepConfiguredStorageClasses(_ classes: [String: StorageClassSpec], in writer: StoreWriter) async throws(StoreError) {
        func tolerant(_ operation: StoreOperation) async throws(StoreError) {
            do {
                _ = try await writer.perform(operation)
            } catch {
                switch error {
                case .alreadyExists, .conflict, .notFound: return
                default: throw error
                }
            }
        }
        for (name, spec) in classes.sorted(by: { $0.key < $1.key }) {
            switch try await writer.get(kind: "StorageClass", name: name) {
            case .storageClass(var stored)?:
                guard stored.metadata.owner == configOwner, stored.spec != spec else { continue }
                stored.spec = spec
                try await tolerant(.update(.storageClass(stored)))
            case nil:
                var fresh = StorageClass(name: name, spec: spec)
                fresh.metadata.owner = configOwner
                try await tolerant(.create(.storageClass(fresh)))
            default:
                continue
            }
        }
        for case .storageClass(let stored) in try await writer.list(kind: "StorageClass").items where stored.metadata.owner == configOwner && classes[stored.metadata.name] == nil {
            try await tolerant(.delete(kind: "StorageClass", name: stored.metadata.name, revision: stored.metadata.revision))
        }
    }

    /// On first start (no admin token yet) creates one and writes it 0600 to
    /// `<data-dir>/admin.token`; later starts read that file back.
    private static func bootstrapAdminToken(writer: StoreWriter, file: String) async throws(StoreError) -> String? {
        if try await writer.tokens().contains(where: { $0.role == Principal.Role.admin.rawValue }) {
            return TokenFile.read(file).flatMap { writer.authenticate($0) != nil ? $0 : nil }
        }
        let created = try await writer.createToken(role: Principal.Role.admin.rawValue, description: "first admin token, written to \(file)")
        do {
            try TokenFile.write(created.token, to: file)
        } catch {
            throw .storage("cannot write the admin token to \(file): \(error)")
        }
        return created.token
    }

    /// A node token for the agent `capstan dev` runs in this process, kept 0600 in
    /// `<data-dir>/agent.token` and reused while it is valid.
    public func localAgentToken(node: String) async throws(StoreError) -> String {
        let file = URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("agent.token").path
        if let token = TokenFile.read(file), let record = writer.authenticate(token), record.role == Principal.Role.node.rawValue, record.node == node {
            return token
        }
        let created = try await writer.createToken(role: Principal.Role.node.rawValue, node: node, description: "capstan dev's local agent")
        do {
            try TokenFile.write(created.token, to: file)
        } catch {
            throw .storage("cannot write the agent token to \(file): \(error)")
        }
        return created.token
    }

    /// `http://host:port` once the API listens; nil if cancelled first.
    public var address: String? {
        get async {
            while !Task.isCancelled {
                if let address = listening.withLock({ $0 }) { return address }
                try? await Task.sleep(for: .milliseconds(20))
            }
            return nil
        }
    }

    /// The services to run, in start order: the API last, so it answers only once the loops run.
    public func services(logger: Logger) -> [any ServiceLifecycle.Service] {
        // With SQLite this server is the only one, and ready once its loops listed; with etcd a
        // follower runs no loops, and is ready once its informer listed.
        let readiness = ReadinessGate(cluster == nil ? ["scheduler", "workloads", "nodes", "endpoints"] : ["informer"])
        // One subscription, one list, one indexed cache for the loops.
        let informer = SharedInformer(writer: writer, onListed: { readiness.ready("informer") })
        let plugins = self.plugins
        let metrics = self.metrics
        let options = self.options
        let makeLoops: @Sendable (StoreWriter) -> [(service: any ServiceLifecycle.Service, feed: SharedInformer.Feed?)] = { writer in
            let scheduler = SchedulerLoop(writer: writer, informer: informer, host: plugins, metrics: metrics, readiness: readiness)
            let workloads = WorkloadController(writer: writer, informer: informer, readiness: readiness)
            let nodes = NodeLifecycleController(writer: writer, informer: informer, options: options, readiness: readiness)
            let endpoints = EndpointsController(writer: writer, informer: informer, readiness: readiness)
            let volumes = VolumeController(writer: writer, informer: informer)
            return [(scheduler, scheduler.feed), (workloads, workloads.feed), (nodes, nodes.feed), (endpoints, endpoints.feed), (volumes, volumes.feed)]
        }
        let makeTermLoops: @Sendable (StoreWriter) -> [(service: any ServiceLifecycle.Service, feed: SharedInformer.Feed?)] = { writer in
            [(ConfiguredStorageClasses(classes: plugins.storageClasses, writer: writer, log: { logger.warning("\($0)") }), nil)] + makeLoops(writer)
        }
        var routes = APIRoutes(writer: writer, metrics: metrics, plugins: { [self] in await self.pluginInfo() }, isReady: { readiness.isReady }, maxInstances: options.maxInstances, audit: audit, ca: ca, identity: identity)
        routes.servers = { [self] in await self.servers() }
        routes.leadership = leadership
        if cluster != nil {
            routes.cachedKind = { kind in informer.read { Array($0.all(kind)) } }
        }
        routes.cached = { kind, name in informer.read { $0.objects[kind]?[name] } }
        if let clusterCIDR = IPv4Network(options.clusterCIDR), let serviceCIDR = IPv4Network(options.serviceCIDR) {
            var reservations: AddressAllocator.Reservations?
            if let cluster {
                reservations = { @Sendable (address: String, owner: String, holds: @escaping @Sendable (String) -> Bool) async throws -> Bool in
                    try await cluster.reserve(address, owner: owner, holds: holds)
                }
            }
            routes.addresses = AddressAllocator(settings: .init(clusterCIDR: clusterCIDR, serviceCIDR: serviceCIDR, nodeMaskSize: options.nodeCIDRMaskSize), reservations: reservations) { key in
                informer.read { $0.addressOwners[key] }
            }
            routes.cluster = ClusterInfo(clusterCIDR: options.clusterCIDR, serviceCIDR: options.serviceCIDR, clusterDomain: options.clusterDomain,
                                         nodeTimeoutSeconds: options.heartbeatTimeout, evictionTimeoutSeconds: options.evictionTimeout)
        }
        let server: HTTPServerBuilder
        if let identity, let tls = try? identity.serverConfiguration(clientCertificates: .optional), let builder = try? HTTPServerBuilder.tls(.http1(), tlsConfiguration: tls) {
            server = builder
        } else {
            server = .http1()
        }
        let scheme = identity == nil ? "http" : "https"
        let caPEM = ca?.certificatePEM
        let app = Application(
            router: routes.router(),
            server: server,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "capstan"),
            onServerRunning: { [self] channel in
                let port = channel.localAddress?.port ?? options.port
                let host = options.host.contains(":") ? "[\(options.host)]" : options.host
                let address = "\(scheme)://\(host):\(port)"
                listening.withLock { $0 = address }
                try? (address + "\n").write(toFile: URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("server.address").path, atomically: true, encoding: .utf8)
                if let adminToken {
                    do {
                        try ClientConfig.remember(server: address, token: adminToken, ca: caPEM)
                        logger.info("admin token for \(address) written to \(ClientConfig.path) (the capstan CLI reads it there)")
                    } catch {
                        logger.warning("could not write \(ClientConfig.path): \(error); the admin token is in \(options.dataDirectory)/admin.token")
                    }
                }
                logger.info("capstan server listening on \(address), data in \(options.dataDirectory)")
                if let ca {
                    try? (ca.hash + "\n").write(toFile: URL(fileURLWithPath: options.dataDirectory).appendingPathComponent("pki/ca.hash").path, atomically: true, encoding: .utf8)
                    logger.info("cluster CA \(ca.hash); join a machine with: capstan agent --server \(address) --join-token $(capstan token create --role join) --ca-hash \(ca.hash)")
                }
            },
            logger: logger
        )
        let shutdown = BusShutdown(bus: bus, writer: writer)
        guard let cluster else {
            return [informer] + makeLoops(writer).map(\.service) + [app, shutdown]
        }
        let election = LeaderElection(client: cluster.client, identity: serverName, ttl: options.leaderTTL)
        let leadership = Leadership(election: election, state: self.leadership, informer: informer, writer: writer, cluster: cluster,
                                    compactionInterval: options.compactionInterval, log: { logger.info("\($0)") }, makeLoops: makeTermLoops)
        let registry = ServerRegistry(client: cluster.client, name: serverName, address: { [self] in await self.address })
        return [EtcdWatchPump(cluster: cluster), informer, leadership, app, registry, shutdown]
    }

    /// The servers of this cluster and who leads: with etcd, every live server's entry; with
    /// SQLite, this one.
    func servers() async -> [ServerInfo] {
        let state = leadership.snapshot
        guard let cluster else {
            return [ServerInfo(name: serverName, address: listening.withLock { $0 } ?? "", leader: true, term: nil, since: state.lastTransition)]
        }
        let entries = (try? await ServerRegistry.all(cluster.client)) ?? []
        let leader = try? await cluster.client.range(Array(LeaderElection.defaultKey.utf8)).kvs.first
        let leaderName = leader.map { String(decoding: $0.value, as: UTF8.self) }
        return entries.sorted { $0.name < $1.name }.map { entry in
            ServerInfo(name: entry.name, address: entry.address, leader: entry.name == leaderName,
                       term: entry.name == leaderName ? leader?.modRevision : nil, since: entry.started)
        }
    }

    /// The server's plugins and each registered node's, as its agent reported them in the
    /// Node's status when it registered (no call to any agent).
    func pluginInfo() async -> [PluginInfo] {
        let defaults = plugins.registry.defaults
        var all = plugins.registry.entries.map {
            PluginInfo(name: $0.name, kind: "\($0.kind)", library: $0.library, isDefault: defaults[$0.kind] == $0.name, loadedBy: "server")
        }
        let nodes = (try? await writer.list(kind: "Node").items) ?? []
        for case .node(let node) in nodes {
            all += node.status.plugins.map {
                PluginInfo(name: $0.name, kind: $0.kind, library: $0.library, isDefault: $0.isDefault, loadedBy: "node/\(node.metadata.name)")
            }
        }
        return all
    }
}

/// Finishes the bus on graceful shutdown, which ends every watch stream and controller loop.
/// Last in the group, so it is shut down first (services stop in reverse order): the API's
/// graceful stop would otherwise wait for its open watch streams.
struct BusShutdown: ServiceLifecycle.Service {
    let bus: EventBus
    let writer: StoreWriter
    func run() async throws {
        try? await gracefulShutdown()
        bus.finish()
        writer.close()
    }
}
