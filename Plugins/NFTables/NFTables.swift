import CapstanCore
import CapstanSDK
import CapstanSupervision
import Foundation

/// Settings of the `nftables` load-balancer plugin.
struct NFTablesConfiguration: PluginConfiguration {
    /// The table Capstan owns (family `ip`); nothing else in the ruleset is touched.
    var table: String
    /// The `nft` program; when set, it is used instead of libnftables.
    var nft: String?
    /// Seconds one `nft -f` transaction may take.
    var timeout: Double

    enum CodingKeys: String, CodingKey, CaseIterable { case table, nft, timeout }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        table = try container.decodeIfPresent(String.self, forKey: .table) ?? "capstan"
        nft = try container.decodeIfPresent(String.self, forKey: .nft)
        timeout = try container.decodeIfPresent(Double.self, forKey: .timeout) ?? 30
    }

    func validate() -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        let valid = (1...32).contains(table.utf8.count) && table.utf8.first.map({ $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) == true && table.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
        }
        if !valid { problems.append(ValidationProblem(path: "table", message: "\"\(table.prefix(40))\" is not 1-32 lowercase letters, digits, '-' or '_', starting with a letter")) }
        if let nft, !nft.hasPrefix("/") { problems.append(ValidationProblem(path: "nft", message: "\"\(nft)\" is not an absolute path")) }
        if !(timeout >= 1 && timeout <= 600) { problems.append(ValidationProblem(path: "timeout", message: "\(timeout) is not 1-600 seconds")) }
        return problems
    }
}

/// The default data plane: Services' virtual IPs DNAT'd to their ready endpoints by the kernel,
/// programmed as nftables transactions into one table Capstan owns — the design of
/// kube-proxy's nftables mode:
/// - one verdict map `service-ips` (`ip . protocol . port : goto <service chain>`), so a packet
///   costs one map lookup however many services there are;
/// - a chain per service port whose one rule picks an endpoint with `numgen random` (random),
///   `numgen inc` (round robin) or `jhash ip saddr` (source affinity) — more than kube-proxy's
///   nftables mode offers (random only) — and DNATs to it through a map of `address . port`
///   (no chain per endpoint, so the table and each transaction stay small);
/// - a `hairpin` set of `endpoint . endpoint` pairs: a connection DNAT'd back to the instance
///   that made it (an instance reaching its own service) is masqueraded;
/// - a `no-endpoint-services` map that rejects connections to a service without ready
///   endpoints at once (TCP reset), instead of letting them time out.
///
/// Transactions go through libnftables in process (the library the `nft` command is built on;
/// the command itself when the library is missing or `nft` is configured).
///
/// Conntrack keeps established connections on the endpoint they were DNAT'd to, so removing an
/// endpoint stops new connections to it at once and leaves open ones alone. A change to one
/// service is one small transaction touching only its chains and map elements.
actor NFTablesBalancer: LoadBalancerPlugin {
    nonisolated let configuration: NFTablesConfiguration
    /// What the kernel holds, by program name (one service port).
    private var held: [String: ProgramServiceRequest] = [:]
    /// The table exists with its base chains and maps.
    private var ready = false
    /// Service chains that exist in the kernel (a service that never had a ready backend has none).
    private var serviceChains: Set<String> = []
    /// Endpoint address → how many service ports use it: the `hairpin` set holds each once.
    private var hairpin: [String: Int] = [:]
    /// One transaction at a time, in call order: each is built from ``held``, which the one
    /// before it changes.
    private let gate = SerialGate()
    /// libnftables, shared by every balancer of this process; nil when not installed.
    static let library = LibNFTables()

    static let algorithms = ["random", "roundrobin", "sourcehash"]

    init(configuration: NFTablesConfiguration) {
        self.configuration = configuration
    }

    nonisolated var capabilities: LoadBalancerCapabilities {
        LoadBalancerCapabilities(dataPlane: .kernel, algorithms: Self.algorithms, usesKey: true)
    }

    func program(_ request: ProgramServiceRequest) async throws {
        try check(request)
        try await gate.run { try await programNow(request) }
    }

    private func programNow(_ request: ProgramServiceRequest) async throws {
        guard ready else {
            var all = held
            all[request.service] = request
            try await synchronizeNow(Array(all.values))
            return
        }
        var script = ""
        let previous = held[request.service]
        let chain = Self.chainName("svc", request.service)
        if let previous { script += removal(previous) }
        script += definition(request, creating: !serviceChains.contains(chain))
        var references = hairpin
        script += hairpinChanges(from: previous, to: request, references: &references)
        try await apply(script)
        held[request.service] = request
        hairpin = references
        if !Self.backends(request).isEmpty { serviceChains.insert(chain) }
    }

    func removeService(_ service: String) async throws {
        try await gate.run {
            guard let previous = held[service] else { return }
            let chain = Self.chainName("svc", service)
            var references = hairpin
            if ready {
                var script = removal(previous)
                if serviceChains.contains(chain) { script += "delete chain ip \(configuration.table) \(chain)\n" }
                script += hairpinChanges(from: previous, to: nil, references: &references)
                try await apply(script)
            }
            hairpin = references
            held[service] = nil
            serviceChains.remove(chain)
        }
    }

    func synchronize(_ services: [ProgramServiceRequest]) async throws {
        for request in services { try check(request) }
        try await gate.run { try await synchronizeNow(services) }
    }

    private func synchronizeNow(_ services: [ProgramServiceRequest]) async throws {
        let table = configuration.table
        var script = "table ip \(table) {}\ndelete table ip \(table)\n"
        guard !services.isEmpty else {
            // Nothing to hold: no table at all (the next program makes it again).
            try await apply(script)
            held = [:]
            serviceChains = []
            hairpin = [:]
            ready = false
            return
        }
        script += base()
        for request in services.sorted(by: { $0.service < $1.service }) { script += definition(request, creating: true) }
        var references: [String: Int] = [:]
        for request in services { script += hairpinChanges(from: nil, to: request, references: &references) }
        try await apply(script)
        hairpin = references
        held = Dictionary(services.map { ($0.service, $0) }, uniquingKeysWith: { _, last in last })
        serviceChains = Set(services.filter { !Self.backends($0).isEmpty }.map { Self.chainName("svc", $0.service) })
        ready = true
    }

    // MARK: The ruleset

    private func base() -> String {
        let t = configuration.table
        let key = "type ipv4_addr . inet_proto . inet_service : verdict"
        return """
        add table ip \(t)
        add map ip \(t) service-ips { \(key) ; }
        add map ip \(t) no-endpoint-services { \(key) ; }
        add chain ip \(t) services
        add rule ip \(t) services ip daddr . meta l4proto . th dport vmap @service-ips
        add chain ip \(t) nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }
        add rule ip \(t) nat-prerouting jump services
        add chain ip \(t) nat-output { type nat hook output priority -100 ; policy accept ; }
        add rule ip \(t) nat-output jump services
        add chain ip \(t) nat-postrouting { type nat hook postrouting priority 100 ; policy accept ; }
        add set ip \(t) hairpin { type ipv4_addr . ipv4_addr ; }
        add rule ip \(t) nat-postrouting ct status dnat ip saddr . ip daddr @hairpin masquerade
        add chain ip \(t) reject-chain
        add rule ip \(t) reject-chain meta l4proto tcp reject with tcp reset
        add rule ip \(t) reject-chain reject
        add chain ip \(t) filter-forward { type filter hook forward priority 0 ; policy accept ; }
        add rule ip \(t) filter-forward ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
        add chain ip \(t) filter-output { type filter hook output priority 0 ; policy accept ; }
        add rule ip \(t) filter-output ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
        add chain ip \(t) filter-input { type filter hook input priority 0 ; policy accept ; }
        add rule ip \(t) filter-input ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services

        """
    }

    /// The chain and map element of one service port: one rule that picks an endpoint and
    /// DNATs to it through an anonymous map (`numgen`/`jhash` → address . port), so a service
    /// costs one chain and one rule however many endpoints it has.
    private func definition(_ request: ProgramServiceRequest, creating: Bool) -> String {
        let t = configuration.table
        let backends = Self.backends(request)
        let key = "\(request.frontendAddress) . \(request.protocol) . \(request.frontendPort)"
        let chain = Self.chainName("svc", request.service)
        guard !backends.isEmpty else {
            return "add element ip \(t) no-endpoint-services { \(key) : goto reject-chain }\n"
        }
        var script = creating ? "add chain ip \(t) \(chain)\n" : "flush chain ip \(t) \(chain)\n"
        let spread: String
        switch request.algorithm ?? "random" {
        case "roundrobin": spread = "numgen inc mod \(backends.count)"
        case "sourcehash": spread = "jhash ip saddr mod \(backends.count)"
        default: spread = "numgen random mod \(backends.count)"
        }
        let targets = backends.enumerated().map { "\($0.offset) : \($0.element.address) . \($0.element.port)" }.joined(separator: ", ")
        script += "add rule ip \(t) \(chain) meta l4proto \(request.protocol) dnat ip to \(spread) map { \(targets) }\n"
        script += "add element ip \(t) service-ips { \(key) : goto \(chain) }\n"
        return script
    }

    /// Undoes ``definition(_:creating:)`` but for the service chain, which is emptied (callers
    /// delete it when the service goes).
    private func removal(_ request: ProgramServiceRequest) -> String {
        let t = configuration.table
        let key = "\(request.frontendAddress) . \(request.protocol) . \(request.frontendPort)"
        guard !Self.backends(request).isEmpty else { return "delete element ip \(t) no-endpoint-services { \(key) }\n" }
        return "delete element ip \(t) service-ips { \(key) }\nflush chain ip \(t) \(Self.chainName("svc", request.service))\n"
    }

    /// The `hairpin` set's changes when a service port's endpoints go from `old` to `new`:
    /// an address joins when its first user appears and leaves with its last.
    private func hairpinChanges(from old: ProgramServiceRequest?, to new: ProgramServiceRequest?, references: inout [String: Int]) -> String {
        let before = Set((old.map(Self.backends) ?? []).map(\.address))
        let after = Set((new.map(Self.backends) ?? []).map(\.address))
        var added: [String] = []
        var removed: [String] = []
        for address in after.subtracting(before) {
            references[address, default: 0] += 1
            if references[address] == 1 { added.append("\(address) . \(address)") }
        }
        for address in before.subtracting(after) {
            references[address, default: 1] -= 1
            if references[address] == 0 {
                references[address] = nil
                removed.append("\(address) . \(address)")
            }
        }
        var script = ""
        if !added.isEmpty { script += "add element ip \(configuration.table) hairpin { \(added.sorted().joined(separator: ", ")) }\n" }
        if !removed.isEmpty { script += "delete element ip \(configuration.table) hairpin { \(removed.sorted().joined(separator: ", ")) }\n" }
        return script
    }

    /// The ready backends, in a stable order (one endpoint chain each).
    static func backends(_ request: ProgramServiceRequest) -> [Backend] {
        var seen = Set<String>()
        return request.backends.filter { $0.ready && seen.insert($0.id + "/" + $0.address + ":" + String($0.port)).inserted }
            .sorted { ($0.id, $0.address, $0.port) < ($1.id, $1.address, $1.port) }
    }

    /// `svc-<16 hex>`: a stable, short, valid chain name (FNV-1a of what it stands for).
    static func chainName(_ prefix: String, _ text: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "\(prefix)-\(String(repeating: "0", count: 16 - hex.count))\(hex)"
    }

    /// Refuses what would not be a valid rule, naming it (values reach `nft` as text).
    private func check(_ request: ProgramServiceRequest) throws {
        guard IPv4Address(request.frontendAddress) != nil else { throw PluginError(.invalidArgument, "\(request.service): frontend \(request.frontendAddress) is not an IPv4 address") }
        guard (1...65535).contains(request.frontendPort) else { throw PluginError(.invalidArgument, "\(request.service): frontend port \(request.frontendPort) is not 1-65535") }
        guard request.protocol == "tcp" || request.protocol == "udp" else { throw PluginError(.invalidArgument, "\(request.service): protocol \(request.protocol) is not tcp or udp") }
        if let algorithm = request.algorithm, !Self.algorithms.contains(algorithm) {
            throw PluginError(.invalidArgument, "\(request.service): algorithm \(algorithm) is not one of \(Self.algorithms.joined(separator: ", "))")
        }
        for backend in request.backends {
            guard IPv4Address(backend.address) != nil, (1...65535).contains(backend.port) else {
                throw PluginError(.invalidArgument, "\(request.service): backend \(backend.id) at \(backend.address):\(backend.port) is not an IPv4 address and port")
            }
        }
    }


    /// One transaction: all of it or none. Through libnftables in process when it is there
    /// (and no `nft` path is configured), else through the `nft` command.
    private func apply(_ script: String) async throws {
        if configuration.nft == nil, let library = Self.library {
            guard let failure = await library.apply(script) else { return }
            // The kernel and this plugin may disagree (someone flushed the table?): rebuild all next time.
            ready = false
            throw PluginError(.internal, "nftables refused the transaction (the table is rebuilt on the next change): \(failure)")
        }
        guard let nft = configuration.nft ?? ExternalCommand.find("nft") else {
            throw PluginError(.failedPrecondition, "the nft command is not installed; install Debian's nftables (the nftables load balancer programs the kernel with it)")
        }
        let run = try await ExternalCommand.run(nft, ["-f", "-"], timeout: configuration.timeout, check: false, input: Data(script.utf8))
        guard run.status == 0 else {
            if held.isEmpty && !ready {
                throw PluginError(.internal, "nft -f failed: \(run.diagnostic)")
            }
            // The kernel and this plugin disagree (someone flushed the table?): rebuild all next time.
            ready = false
            throw PluginError(.internal, "nft -f failed (the table is rebuilt on the next change): \(run.diagnostic)")
        }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "nftables", version: "1.0.0", kinds: [.loadBalancer]) { registrar in
        try registrar.register(loadBalancer: "nftables", configuration: NFTablesConfiguration.self) { configuration, _ in
            NFTablesBalancer(configuration: configuration)
        }
    }
}
