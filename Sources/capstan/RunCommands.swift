import ArgumentParser
import CapstanAPI
import CapstanAgent
import struct CapstanCore.IPv4Address
import CapstanEtcd
import CapstanServer
import Foundation
import Logging
import PluginHost
import ServiceLifecycle

/// What `server`, `agent` and `dev` share: the config, the data directory, plugin loading.
struct RunOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The operator config (capstan.yaml). Default: the in-tree plugins next to this binary, with their defaults.")
    var config: String?

    @Option(help: "Where the store (capstan.db), the agent's credentials and plugin state live.")
    var dataDir = ".capstan"

    var dataDirectory: String { URL(fileURLWithPath: dataDir).standardizedFileURL.path }

    /// Loads the plugins once for this process; refuses to start if the config is broken.
    func loadPlugins(nodeName: String?, logger: Logger) throws -> PluginHost {
        let configuration: HostConfiguration
        if let config {
            configuration = try HostConfiguration.load(path: config)
        } else {
            configuration = HostConfiguration.builtIn(executableDirectory: ExecutablePath.directory, stateDirectory: dataDirectory)
        }
        let host = PluginHost.load(configuration, nodeName: nodeName) { level, message in
            switch level {
            case .debug: logger.debug("\(message)")
            case .info: logger.info("\(message)")
            case .warning: logger.warning("\(message)")
            default: logger.error("\(message)")
            }
        }
        for report in host.reports where !report.isLoaded {
            logger.warning("plugin library \(report.path) was refused: \(report.failure?.description ?? report.plugins.compactMap(\.failure?.description).joined(separator: "; "))")
        }
        if !host.problems.isEmpty {
            throw ValidationError((["\(configuration.source) has problems:"] + host.problems.map { "  \($0)" }).joined(separator: "\n"))
        }
        return host
    }
}

/// What only the control plane takes (`server`, `dev`); `agent --help` does not show these.
struct ServerOptions: ParsableArguments {
    @Option(help: "Seconds without a lease renewal before a node is NotReady.")
    var nodeTimeout: Double = 40

    @Option(help: "Seconds a node may stay NotReady before its instances are removed and replaced elsewhere.")
    var evictionTimeout: Double = 300

    @Option(help: "Writes kept for watches to resume from; a watch from an older revision gets 410 and must relist.")
    var watchWindow = 16_384

    @Option(help: "The most instances the cluster may hold: the sum of every workload's replicas and every instance of no workload.")
    var maxInstances = 50_000

    @Flag(help: "Start even when the store is older than the revision this data directory last committed (its WAL was lost); what came after is gone.")
    var acceptRollback = false

    @Flag(help: "Serve plain HTTP instead of HTTPS (on a non-loopback address only with this flag).")
    var insecure = false

    @Option(name: .customLong("tls-san"), help: "Another host name or address for the server's certificate (repeatable).")
    var tlsHosts: [String] = []

    @Option(name: .customLong("cluster-cidr"), help: "Each node gets a pod subnet from this network when it registers.")
    var clusterCIDR = "10.244.0.0/16"

    @Option(name: .customLong("service-cidr"), help: "Services get their virtual IP from this network.")
    var serviceCIDR = "10.96.0.0/16"

    @Option(name: .customLong("node-cidr-mask-size"), help: "The prefix length of each node's pod subnet (16-30; 24 gives 254 instance addresses a node).")
    var nodeCIDRMaskSize = 24

    mutating func validate() throws {
        if let problem = planeOptions(ListenAddress(argument: "127.0.0.1:0")!, tls: false, dataDirectory: "").networkProblems().first {
            throw ValidationError(problem)
        }
        try checkSeconds(nodeTimeout, "--node-timeout", 1...86_400)
        try checkSeconds(evictionTimeout, "--eviction-timeout", 0...31_536_000)
        guard (1...10_000_000).contains(watchWindow) else { throw ValidationError("--watch-window \(watchWindow): give 1 to 10000000 writes") }
        guard (1...10_000_000).contains(maxInstances) else { throw ValidationError("--max-instances \(maxInstances): give 1 to 10000000") }
    }

    func planeOptions(_ listen: ListenAddress, tls: Bool, dataDirectory: String) -> ControlPlane.Options {
        var options = ControlPlane.Options(dataDirectory: dataDirectory, host: listen.host, port: listen.port, heartbeatTimeout: nodeTimeout, evictionTimeout: evictionTimeout, watchWindow: watchWindow, maxInstances: maxInstances, acceptRollback: acceptRollback, tls: tls, tlsHosts: tlsHosts)
        options.clusterCIDR = clusterCIDR
        options.serviceCIDR = serviceCIDR
        options.nodeCIDRMaskSize = nodeCIDRMaskSize
        return options
    }

    /// Refuses plain HTTP off loopback unless `--insecure` says so.
    func checkTransport(_ listen: ListenAddress, tls: Bool) throws {
        if !tls && !listen.isLoopback && !insecure {
            throw ValidationError("--listen \(listen.host):\(listen.port) is not a loopback address: serve it with TLS (the default of capstan server; --tls for capstan dev), or say --insecure to send tokens in the clear")
        }
    }
}

/// The agent's cluster-DNS flags (`capstan agent` and `capstan dev`).
struct DNSOptions: ParsableArguments {
    @Flag(help: "Do not answer DNS for service names (instances in their own network namespace then keep the node's resolv.conf).")
    var noClusterDNS = false

    @Option(name: .customLong("dns-upstream"), help: "Where cluster DNS forwards names that are not services, host[:port] (repeatable; default: the node's /etc/resolv.conf).")
    var dnsUpstreams: [String] = []

    func validate() throws {
        for upstream in dnsUpstreams {
            let parts = upstream.split(separator: ":", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), IPv4Address(String(parts[0])) != nil, parts.count == 1 || UInt16(parts[1]).map({ $0 > 0 }) == true else {
                throw ValidationError("--dns-upstream \(upstream): give an IPv4 address, optionally with :port")
            }
        }
    }

    func apply(to options: inout NodeAgent.Options) {
        options.clusterDNS = !noClusterDNS
        if !dnsUpstreams.isEmpty { options.dnsUpstreams = dnsUpstreams }
    }
}

/// Refuses a flag's number of seconds outside `range` (NaN and infinity included).
func checkSeconds(_ value: Double, _ flag: String, _ range: ClosedRange<Double>) throws {
    guard range.contains(value) else {
        throw ValidationError("\(flag) \(value): give \(Int(range.lowerBound)) to \(Int(range.upperBound)) seconds")
    }
}

/// `host:port`.
struct ListenAddress: ExpressibleByArgument, Sendable {
    var host: String
    var port: Int

    init?(argument: String) {
        guard let colon = argument.lastIndex(of: ":"), let port = Int(argument[argument.index(after: colon)...]), (0...65535).contains(port) else { return nil }
        host = String(argument[..<colon])
        self.port = port
        if host.isEmpty { host = "127.0.0.1" }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    }

    /// 127.0.0.0/8, ::1 or localhost.
    var isLoopback: Bool { host == "localhost" || host == "::1" || host.hasPrefix("127.") }
}

enum Runner {
    static let bootstrap: Void = LoggingSystem.bootstrap { label in
        var handler = StderrLogHandler(label: label)
        handler.logLevel = ProcessInfo.processInfo.environment["CAPSTAN_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        return handler
    }

    static func logger(_ label: String) -> Logger {
        _ = bootstrap
        return Logger(label: label)
    }

    /// Runs services until SIGINT or SIGTERM, then shuts them down gracefully.
    static func run(_ services: [any Service], logger: Logger) async throws {
        // The loops end when the event bus finishes, which is the first step of a graceful
        // shutdown: a service that returns shuts the group down gracefully (exit 0); one that
        // throws fails it (exit 1).
        let group = ServiceGroup(configuration: .init(services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// `capstan server`.
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the control plane: API, store, scheduler and controllers.")

    @OptionGroup var options: RunOptions
    @OptionGroup var serverOptions: ServerOptions
    @Option(help: "Where the API listens (host:port; port 0 picks one, written to <data-dir>/server.address).")
    var listen = ListenAddress(argument: "127.0.0.1:7070")!

    @Option(help: "Where the cluster is kept: sqlite (one file in the data directory, one server) or etcd://host:port[,host:port…] (shared by any number of servers; one of them leads).")
    var store = "sqlite"

    @Option(help: "With etcd: this server's name among the others (default: host name and process id).")
    var name: String?

    @Option(help: "With etcd: seconds the leader's lease lasts without renewal; a dead leader is replaced after about this long (1-60).")
    var leaderTTL: Int64 = 2

    @Option(help: "With etcd: seconds between compactions of etcd's history (a watch may resume from any revision of the last period).")
    var compactionInterval: Double = 300

    @OptionGroup var etcd: EtcdConnectionOptions

    /// The etcd members of `--store` and how to reach them; nil for sqlite.
    func etcdConnection() throws -> EtcdConnectionOptions.Connection? {
        if store == "sqlite" { return nil }
        guard store.hasPrefix("etcd://") else {
            throw ValidationError("--store \(store): give sqlite or etcd://host:port[,host:port…]")
        }
        return try etcd.connection(to: store, flag: "--store")
    }

    func validate() throws {
        _ = try etcdConnection()
        guard (1...60).contains(leaderTTL) else { throw ValidationError("--leader-ttl \(leaderTTL): give 1 to 60 seconds") }
        try checkSeconds(compactionInterval, "--compaction-interval", 10...86_400)
        if let name, name.isEmpty || name.utf8.count > 128 || name.contains("/") {
            throw ValidationError("--name \"\(name)\": give 1 to 128 characters, no /")
        }
    }

    func run() async throws {
        let logger = Runner.logger("capstan.server")
        let tls = !serverOptions.insecure
        try serverOptions.checkTransport(listen, tls: tls)
        if serverOptions.insecure { logger.warning("serving plain HTTP (--insecure): tokens travel in the clear") }
        let plugins = try options.loadPlugins(nodeName: nil, logger: logger)
        var planeOptions = serverOptions.planeOptions(listen, tls: tls, dataDirectory: options.dataDirectory)
        let connection = try etcdConnection()
        planeOptions.etcdEndpoints = connection?.endpoints
        planeOptions.etcdTLS = connection?.tls
        planeOptions.serverName = name
        planeOptions.leaderTTL = leaderTTL
        planeOptions.compactionInterval = .milliseconds(Int64(compactionInterval * 1000))
        let plane = try await ControlPlane(options: planeOptions, plugins: plugins)
        try await Runner.run(plane.services(logger: logger), logger: logger)
    }
}

/// How `capstan server` and `capstan store migrate` reach etcd: over HTTPS with the three files
/// kube-apiserver takes for it, else over plain HTTP on loopback only unless told otherwise.
struct EtcdConnectionOptions: ParsableArguments {
    @Option(help: "With etcd: the CA that signed the members' certificates (PEM); etcd is then reached over HTTPS.")
    var etcdCafile: String?
    @Option(help: "With etcd: the client certificate shown to members started with --client-cert-auth (PEM).")
    var etcdCertfile: String?
    @Option(help: "With etcd: the client certificate's private key (PEM, readable by its owner only).")
    var etcdKeyfile: String?
    @Flag(help: "Talk to etcd members that are not on loopback over plain HTTP, with no TLS (a private network only).")
    var allowPlaintextEtcd = false

    struct Connection {
        var endpoints: [String]
        var tls: EtcdTLS?
    }

    /// The members of `url` and the TLS to reach them with; a member off loopback without TLS
    /// needs `--allow-plaintext-etcd`.
    func connection(to url: String, flag: String) throws -> Connection {
        var tls: EtcdTLS?
        if let etcdCafile {
            do {
                tls = try EtcdTLS.load(caFile: etcdCafile, certificateFile: etcdCertfile, keyFile: etcdKeyfile)
            } catch {
                throw ValidationError(error.description)
            }
        } else if etcdCertfile != nil || etcdKeyfile != nil {
            throw ValidationError("--etcd-certfile and --etcd-keyfile need --etcd-cafile, the CA that signed etcd's certificates")
        }
        let endpoints: [String]
        do {
            endpoints = try EtcdClient.endpoints(from: url, tls: tls != nil)
        } catch {
            throw ValidationError("\(flag): \(error)")
        }
        if tls == nil && !allowPlaintextEtcd, let remote = endpoints.first(where: { !EtcdClient.isLoopback($0) }) {
            throw ValidationError("\(flag): \(remote) is not on loopback: give etcd's CA and a client certificate (--etcd-cafile, --etcd-certfile, --etcd-keyfile), or say --allow-plaintext-etcd on a private network")
        }
        return Connection(endpoints: endpoints, tls: tls)
    }
}

/// `capstan agent`.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run a node agent: register this machine and run the instances bound to it.")

    @OptionGroup var options: RunOptions
    @Option(help: "The API server (default: $CAPSTAN_SERVER, else http://127.0.0.1:7070).") var server: String?
    @Option(help: "This node's name (default: the host name).") var nodeName: String?
    @Option(name: .customLong("label"), help: "A node label, key=value (repeatable).") var labels: [String] = []
    @Option(help: "Where the agent serves logs (host:port; port 0 picks one).") var listen = ListenAddress(argument: "127.0.0.1:0")!
    @Option(help: "Seconds between heartbeats.") var heartbeat: Double = 10
    @Option(help: "This node's token (capstan token create --role node --node NAME); default $CAPSTAN_TOKEN.") var token: String?
    @Option(help: "A file holding this node's token (0600).") var tokenFile: String?
    @Option(help: "A join token (capstan token create --role join): exchanged once for this node's token and certificate, kept in <data-dir>/agent.") var joinToken: String?
    @Option(help: "The cluster CA's pin, sha256:<hex> (capstan server prints it): the agent trusts the server's CA only if it matches.") var caHash: String?
    @Option(help: "The cluster CA's certificate (PEM), instead of --ca-hash.") var caFile: String?
    @OptionGroup var dns: DNSOptions

    func validate() throws { try checkSeconds(heartbeat, "--heartbeat", 0.1...3600) }

    func run() async throws {
        let logger = Runner.logger("capstan.agent")
        var parsed: [String: String] = [:]
        for label in labels {
            let parts = label.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw ValidationError("--label \(label): expected key=value") }
            parsed[parts[0]] = parts[1]
        }
        var agentOptions = NodeAgent.Options(nodeName: nodeName, labels: parsed, listenHost: listen.host, listenPort: listen.port, heartbeatInterval: .milliseconds(Int64(heartbeat * 1000)))
        dns.apply(to: &agentOptions)
        let server = ClientOptions.resolve(self.server)
        let credentials: AgentCredentials
        do {
            credentials = try await AgentCredentials.prepare(
                server: server, nodeName: agentOptions.nodeName, directory: options.dataDirectory + "/agent",
                token: token ?? tokenFile.flatMap(TokenFile.read) ?? ProcessInfo.processInfo.environment["CAPSTAN_TOKEN"],
                joinToken: joinToken, caHash: caHash, caFile: caFile,
                hosts: [listen.host, "127.0.0.1", ProcessInfo.processInfo.hostName.lowercased()])
        } catch let failure as AgentCredentials.Failure {
            throw ValidationError(failure.description)
        }
        agentOptions.token = credentials.token
        agentOptions.caPEM = credentials.caPEM
        agentOptions.identity = credentials.identity
        let plugins = try options.loadPlugins(nodeName: agentOptions.nodeName, logger: logger)
        let agent = NodeAgent(options: agentOptions, plugins: plugins, logger: logger, server: { server })
        try await Runner.run(agent.services(), logger: logger)
    }
}

/// `capstan dev`: server and agent in one process.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a one-machine cluster in one process: control plane and a local agent, data in ./.capstan.")

    @OptionGroup var options: RunOptions
    @OptionGroup var serverOptions: ServerOptions
    @Option(help: "Where the API listens (host:port; port 0 picks one, written to <data-dir>/server.address).")
    var listen = ListenAddress(argument: "127.0.0.1:7070")!
    @Option(help: "The local node's name (default: the host name).") var nodeName: String?
    @Option(help: "Seconds between the local agent's heartbeats.") var heartbeat: Double = 10
    @Flag(help: "Serve HTTPS with the cluster CA's certificate (the default off loopback).") var tls = false
    @OptionGroup var dns: DNSOptions

    func validate() throws { try checkSeconds(heartbeat, "--heartbeat", 0.1...3600) }

    func run() async throws {
        let logger = Runner.logger("capstan.dev")
        let tls = self.tls || (!listen.isLoopback && !serverOptions.insecure)
        try serverOptions.checkTransport(listen, tls: tls)
        var agentOptions = NodeAgent.Options(nodeName: nodeName, heartbeatInterval: .milliseconds(Int64(heartbeat * 1000)))
        dns.apply(to: &agentOptions)
        let plugins = try options.loadPlugins(nodeName: agentOptions.nodeName, logger: logger)
        let plane = try await ControlPlane(options: serverOptions.planeOptions(listen, tls: tls, dataDirectory: options.dataDirectory), plugins: plugins)
        agentOptions.caPEM = plane.ca?.certificatePEM
        agentOptions.token = try await plane.localAgentToken(node: agentOptions.nodeName)
        let agent = NodeAgent(options: agentOptions, plugins: plugins, logger: logger, server: { await plane.address })
        try await Runner.run(plane.services(logger: logger) + agent.services(), logger: logger)
    }
}
