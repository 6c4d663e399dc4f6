import CapstanCore
import CapstanSDK
import CapstanSupervision
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The `cni` network plugin: each instance gets its own network namespace (the agent makes it)
/// wired by the real CNI plugins from Debian's `containernetworking-plugins` — by default a Linux
/// bridge with addresses from the node's pod subnet (host-local IPAM), port mapping (portmap)
/// and loopback — through the CNI protocol: ADD / DEL / CHECK / VERSION with `cniVersion`
/// negotiation, `CNI_ARGS`, and a result cache so DEL gets exactly what ADD returned (and the
/// list that made it). Across nodes it routes (host-gw): every other node's subnet via that
/// node's address, and the cluster and service CIDRs are `unreachable` otherwise, so stray
/// cluster traffic never leaves the machine.
actor CNINetwork: NetworkPlugin, NetworkTopology, NetworkInventory {
    nonisolated let configuration: CNIConfiguration
    nonisolated let state: URL
    private let list: NetworkList
    private var cluster: ClusterNetwork?
    private var negotiated: String?
    /// Routes this plugin added to other nodes' subnets.
    private var routed: Set<String> = []

    /// The versions this host speaks, newest first.
    static let versions = ["1.1.0", "1.0.0", "0.4.0", "0.3.1"]

    init(configuration: CNIConfiguration, context: PluginContext) throws {
        self.configuration = configuration
        state = URL(fileURLWithPath: context.stateDirectory)
        try FileManager.default.createDirectory(at: state.appendingPathComponent("results"), withIntermediateDirectories: true)
        if let path = configuration.conflist {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw PluginError(.invalidArgument, "conflist \(path) cannot be read; give a CNI network list file, or leave conflist out for the built-in bridge")
            }
            list = try NetworkList(data: data, source: path)
        } else {
            list = NetworkList.builtIn(configuration, ipamDirectory: state.appendingPathComponent("ipam").path)
        }
        if let data = FileManager.default.contents(atPath: state.appendingPathComponent("cluster.json").path),
           let saved = try? JSONDecoder().decode(SavedCluster.self, from: data) {
            cluster = saved.restored
            routed = Set(saved.routed)
        }
    }

    nonisolated var capabilities: NetworkCapabilities { NetworkCapabilities(isolatedNamespaces: true, portMapping: true) }

    // MARK: Attach, detach, check

    func attach(_ request: NetworkAttachRequest) async throws -> NetworkAttachment {
        guard let namespace = request.namespacePath else {
            throw PluginError(.invalidArgument, "the cni network plugin needs the instance's network namespace (namespacePath); the agent makes one when the plugin's capabilities ask")
        }
        let identity = Self.identity(of: namespace)
        if let cached = try cachedResult(request.instanceID) {
            if cached.complete, cached.namespace == namespace, cached.namespaceIdentity == identity, identity != nil {
                // Idempotent: the same instance in the same namespace attached again (a retry,
                // an adopted instance).
                return attachment(request.instanceID, cached)
            }
            // A record of another namespace (an earlier instance of this name whose DEL failed,
            // or an ADD that never finished): undo it first, so its address and veth are freed.
            try await detach(NetworkDetachRequest(instanceID: request.instanceID, namespacePath: nil))
        }
        // Missing plugins and version mismatches first: they need a person, not a retry.
        let version = try await negotiate()
        guard let podCIDR = cluster?.podCIDR else {
            throw PluginError(.failedPrecondition, "node has no pod subnet yet: the control plane gives one from its cluster CIDR at registration (if the CIDR is full, widen --cluster-cidr)")
        }
        let used = effective(podCIDR: podCIDR)
        let mappings = request.ports.compactMap { port -> PortMapping? in
            guard let host = port.hostPort, host > 0 else { return nil }
            return PortMapping(containerPort: port.containerPort, hostPort: host, protocol: (port.protocol ?? "tcp").lowercased())
        }
        // A pending record first: if the process dies mid-ADD, or an undo fails, detach and
        // garbage collection still find what to DEL.
        var record = CachedResult(namespace: namespace, cniVersion: version, list: used.plugins, name: used.name, result: .null, ports: mappings)
        record.complete = false
        record.namespaceIdentity = identity
        try JSONEncoder().encode(record).write(to: resultFile(request.instanceID), options: .atomic)
        _ = try await invoke("loopback", command: "ADD", config: ["cniVersion": .string(version), "name": "capstan-lo", "type": "loopback"], id: request.instanceID, namespace: namespace, interface: "lo")
        var previous: JSONValue?
        for index in used.plugins.indices {
            let config = pluginConfig(used, index, version: version, previous: previous, ports: mappings)
            do {
                previous = try await invoke(used.type(at: index), command: "ADD", config: config, id: request.instanceID, namespace: namespace, interface: configuration.interface)
            } catch {
                // Nothing half-made: what the earlier plugins (and this one) did is undone. If an
                // undo fails, the pending record stays for the next detach to finish.
                var undone = true
                for undo in (0...index).reversed() {
                    let config = pluginConfig(used, undo, version: version, previous: previous, ports: mappings)
                    do {
                        _ = try await invoke(used.type(at: undo), command: "DEL", config: config, id: request.instanceID, namespace: namespace, interface: configuration.interface)
                    } catch {
                        undone = false
                    }
                }
                if undone { try? FileManager.default.removeItem(at: resultFile(request.instanceID)) }
                throw error
            }
        }
        record.result = previous ?? .null
        record.complete = true
        let data = try JSONEncoder().encode(record)
        try data.write(to: resultFile(request.instanceID), options: .atomic)
        return attachment(request.instanceID, record)
    }

    func detach(_ request: NetworkDetachRequest) async throws {
        let cached = try cachedResult(request.instanceID)
        let namespace = request.namespacePath ?? cached?.namespace ?? ""
        let version: String
        let used: NetworkList
        if let cached {
            version = cached.cniVersion
            used = NetworkList(name: cached.name, cniVersion: version, plugins: cached.list)
        } else {
            // Never attached, or its record is gone: DEL is still safe (plugins release by
            // container ID), and with no pod subnet there is nothing to release.
            guard let podCIDR = cluster?.podCIDR else { return }
            version = try await negotiate()
            used = effective(podCIDR: podCIDR)
        }
        var failures: [String] = []
        for index in used.plugins.indices.reversed() {
            let config = pluginConfig(used, index, version: version, previous: cached?.complete == true ? cached?.result : nil, ports: cached?.ports ?? [])
            do {
                _ = try await invoke(used.type(at: index), command: "DEL", config: config, id: request.instanceID, namespace: namespace, interface: configuration.interface)
            } catch {
                failures.append("\(error)")
            }
        }
        guard failures.isEmpty else { throw PluginError(.internal, failures.joined(separator: "; ")) }
        try? FileManager.default.removeItem(at: resultFile(request.instanceID))
    }

    func check(_ request: NetworkCheckRequest) async throws -> NetworkAttachment {
        guard let cached = try cachedResult(request.instanceID), cached.complete else {
            throw PluginError(.notFound, "instance \(request.instanceID) has no CNI attachment on this node")
        }
        // CHECK exists from CNI 0.4.0 on.
        if cached.cniVersion.compare("0.4.0", options: .numeric) != .orderedAscending {
            let used = NetworkList(name: cached.name, cniVersion: cached.cniVersion, plugins: cached.list)
            for index in used.plugins.indices {
                let config = pluginConfig(used, index, version: cached.cniVersion, previous: cached.result, ports: cached.ports)
                _ = try await invoke(used.type(at: index), command: "CHECK", config: config, id: request.instanceID, namespace: cached.namespace, interface: configuration.interface)
            }
        }
        return attachment(request.instanceID, cached)
    }

    func status() async throws -> NetworkStatus {
        let types = Set(list.plugins.indices.map { list.type(at: $0) } + ["loopback"])
        let missing = types.filter { find($0) == nil }.sorted()
        let count = (try? attachedInstances().count) ?? 0
        if !missing.isEmpty {
            return NetworkStatus(healthy: false, attachments: count, message: "CNI plugins \(missing.joined(separator: ", ")) not found in \(configuration.binDirs.joined(separator: ", ")); install containernetworking-plugins")
        }
        return NetworkStatus(healthy: true, attachments: count, message: "network \(list.name): \(list.plugins.indices.map { list.type(at: $0) }.joined(separator: " → ")), subnet \(cluster?.podCIDR ?? "not yet given")")
    }

    func attachedInstances() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: state.appendingPathComponent("results").path)
            .filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }
    }

    // MARK: Topology (host-gw routes)

    func configure(_ network: ClusterNetwork) async throws {
        guard let ip = ExternalCommand.find("ip") else {
            throw PluginError(.failedPrecondition, "the ip command (iproute2) is not installed; the cni plugin routes with it")
        }
        // Cluster traffic never leaves the machine unless the cluster routes it: instance
        // addresses no node holds are unreachable; service addresses go to loopback, where the
        // load balancer's DNAT (which happens before routing, and re-routes locally made
        // connections) takes those it knows, and the kernel drops the rest. (An unreachable
        // route would also refuse the node's own connections to services at connect().)
        _ = try await ExternalCommand.run(ip, ["route", "replace", "unreachable", network.clusterCIDR], timeout: configuration.timeout)
        _ = try await ExternalCommand.run(ip, ["route", "replace", network.serviceCIDR, "dev", "lo"], timeout: configuration.timeout)
        // Bridged replies must pass the ip hooks, so connections DNAT'd to an instance on the
        // same bridge are translated back (kube-proxy needs the same).
        var failures: [String] = []
        let bridgeFilter = "/proc/sys/net/bridge/bridge-nf-call-iptables"
        if (try? "1\n".write(toFile: bridgeFilter, atomically: false, encoding: .utf8)) == nil {
            failures.append("cannot enable \(bridgeFilter) (load the br_netfilter module): connections from an instance to a service whose endpoint is on the same bridge would not be translated back")
        }
        var wanted: Set<String> = []
        for peer in network.peers {
            wanted.insert(peer.podCIDR)
            do {
                _ = try await ExternalCommand.run(ip, ["route", "replace", peer.podCIDR, "via", peer.address], timeout: configuration.timeout)
            } catch {
                failures.append("route to node \(peer.nodeName)'s subnet \(peer.podCIDR) via \(peer.address): \(error)")
            }
        }
        for stale in routed.subtracting(wanted) {
            _ = try? await ExternalCommand.run(ip, ["route", "replace", "unreachable", stale], timeout: configuration.timeout)
            _ = try? await ExternalCommand.run(ip, ["route", "del", "unreachable", stale], timeout: configuration.timeout)
        }
        cluster = network
        routed = wanted
        let saved = SavedCluster(network: network, routed: wanted.sorted())
        try JSONEncoder().encode(saved).write(to: state.appendingPathComponent("cluster.json"), options: .atomic)
        if !failures.isEmpty { throw PluginError(.internal, failures.joined(separator: "; ")) }
    }

    // MARK: The CNI protocol

    /// The list with the node's subnet given to host-local IPAM that names none.
    private func effective(podCIDR: String) -> NetworkList {
        var used = list
        for index in used.plugins.indices {
            guard case .object(var ipam)? = used.plugins[index]["ipam"], ipam["type"]?.string == "host-local",
                  ipam["subnet"] == nil, ipam["ranges"] == nil else { continue }
            ipam["ranges"] = .array([.array([["subnet": .string(podCIDR)]])])
            if ipam["routes"] == nil { ipam["routes"] = .array([["dst": "0.0.0.0/0"]]) }
            used.plugins[index]["ipam"] = .object(ipam)
        }
        return used
    }

    /// One plugin's stdin: its own keys, the list's name and version, the previous result and
    /// the runtime config it declared a capability for.
    private func pluginConfig(_ used: NetworkList, _ index: Int, version: String, previous: JSONValue?, ports: [PortMapping]) -> JSONValue {
        var config = used.plugins[index]
        config["name"] = .string(used.name)
        config["cniVersion"] = .string(version)
        if let previous, previous != .null { config["prevResult"] = previous }
        if case .object(let capabilities)? = config["capabilities"], capabilities["portMappings"] == .bool(true), !ports.isEmpty {
            config["runtimeConfig"] = ["portMappings": .array(ports.map { ["hostPort": .number(Double($0.hostPort)), "containerPort": .number(Double($0.containerPort)), "protocol": .string($0.protocol)] })]
        }
        config["capabilities"] = nil
        return .object(config)
    }

    /// The version to speak: the list's, if every plugin supports it; else the newest all do.
    private func negotiate() async throws -> String {
        if let negotiated { return negotiated }
        let types = Array(Set(list.plugins.indices.map { list.type(at: $0) } + ["loopback"])).sorted()
        var common = Set(Self.versions)
        for type in types {
            guard let binary = find(type) else { throw missing(type) }
            let answer = try await ExternalCommand.run(binary, [], timeout: configuration.timeout, check: false,
                                                       input: Data(#"{"cniVersion":"0.4.0"}"#.utf8), environment: environment(command: "VERSION", id: "", namespace: "", interface: ""))
            guard answer.status == 0, let parsed = try? JSONDecoder().decode(JSONValue.self, from: answer.stdout), case .array(let versions)? = parsed["supportedVersions"] else {
                throw PluginError(.failedPrecondition, "CNI plugin \(binary) did not answer VERSION: \(answer.diagnostic)")
            }
            let supported = Set(versions.compactMap(\.string))
            if let asked = list.cniVersion, !supported.contains(asked) {
                throw PluginError(.failedPrecondition, "the network list asks cniVersion \(asked), but CNI plugin \(type) (\(binary)) supports \(supported.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.joined(separator: ", "))")
            }
            common.formIntersection(supported)
        }
        let version: String
        if let asked = list.cniVersion { version = asked } else {
            guard let newest = Self.versions.first(where: common.contains) else {
                throw PluginError(.failedPrecondition, "the CNI plugins \(types.joined(separator: ", ")) share no version this host speaks (\(Self.versions.joined(separator: ", ")))")
            }
            version = newest
        }
        negotiated = version
        return version
    }

    /// Runs one CNI plugin; its result, or its CNI error as a ``PluginError``.
    private func invoke(_ type: String, command: String, config: JSONValue, id: String, namespace: String, interface: String) async throws -> JSONValue {
        guard let binary = find(type) else { throw missing(type) }
        let input = try JSONEncoder().encode(config)
        let run = try await ExternalCommand.run(binary, [], timeout: configuration.timeout, check: false, input: input, environment: environment(command: command, id: id, namespace: namespace, interface: interface))
        guard run.status == 0 else {
            // A CNI error is JSON on stdout: {code, msg, details}.
            if let error = try? JSONDecoder().decode(JSONValue.self, from: run.stdout), let message = error["msg"]?.string {
                let details = error["details"]?.string.map { ": \($0)" } ?? ""
                throw PluginError(.internal, "CNI \(type) \(command) failed: \(message)\(details)")
            }
            throw PluginError(.internal, "CNI \(type) \(command) failed (exit \(run.status)): \(run.diagnostic)")
        }
        if run.stdout.isEmpty { return .null }
        return (try? JSONDecoder().decode(JSONValue.self, from: run.stdout)) ?? .null
    }

    private func environment(command: String, id: String, namespace: String, interface: String) -> [String: String] {
        [
            "CNI_COMMAND": command, "CNI_CONTAINERID": id, "CNI_NETNS": namespace, "CNI_IFNAME": interface,
            "CNI_PATH": configuration.binDirs.joined(separator: ":"),
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=\(id);CAPSTAN_INSTANCE=\(id)",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    }

    private func find(_ type: String) -> String? {
        configuration.binDirs.map { "\($0)/\(type)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private func missing(_ type: String) -> PluginError {
        PluginError(.failedPrecondition, "CNI plugin \"\(type)\" not found in \(configuration.binDirs.joined(separator: ", ")); install Debian's containernetworking-plugins or set binDirs")
    }

    // MARK: The result cache

    struct CachedResult: Codable {
        var namespace: String
        var cniVersion: String
        var list: [[String: JSONValue]]
        var name: String
        var result: JSONValue
        var ports: [PortMapping]
        /// The namespace's device and inode when attached: the same path later may be another
        /// namespace (a new instance of the same name).
        var namespaceIdentity: String?
        /// False while ADD runs (or when its undo failed): DEL it, never return it.
        var complete = true

        init(namespace: String, cniVersion: String, list: [[String: JSONValue]], name: String, result: JSONValue, ports: [PortMapping]) {
            (self.namespace, self.cniVersion, self.list, self.name, self.result, self.ports) = (namespace, cniVersion, list, name, result, ports)
        }

        enum CodingKeys: String, CodingKey { case namespace, cniVersion, list, name, result, ports, namespaceIdentity, complete }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            namespace = try container.decode(String.self, forKey: .namespace)
            cniVersion = try container.decode(String.self, forKey: .cniVersion)
            list = try container.decode([[String: JSONValue]].self, forKey: .list)
            name = try container.decode(String.self, forKey: .name)
            result = try container.decode(JSONValue.self, forKey: .result)
            ports = try container.decode([PortMapping].self, forKey: .ports)
            namespaceIdentity = try container.decodeIfPresent(String.self, forKey: .namespaceIdentity)
            complete = try container.decodeIfPresent(Bool.self, forKey: .complete) ?? true
        }
    }

    /// `device:inode` of a namespace file, nil when there is none.
    static func identity(of path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return "\(info.st_dev):\(info.st_ino)"
    }

    struct SavedCluster: Codable {
        var network: ClusterNetworkRecord
        var routed: [String]
        init(network: ClusterNetwork, routed: [String]) {
            self.network = ClusterNetworkRecord(network)
            self.routed = routed
        }
    }

    private func resultFile(_ id: String) -> URL {
        state.appendingPathComponent("results").appendingPathComponent("\(id).json")
    }

    private func cachedResult(_ id: String) throws -> CachedResult? {
        guard let data = FileManager.default.contents(atPath: resultFile(id).path) else { return nil }
        return try? JSONDecoder().decode(CachedResult.self, from: data)
    }

    private nonisolated func attachment(_ id: String, _ record: CachedResult) -> NetworkAttachment {
        var addresses: [String] = []
        if case .array(let ips)? = record.result["ips"] {
            for ip in ips { if let address = ip["address"]?.string { addresses.append(String(address.prefix { $0 != "/" })) } }
        }
        var environment: [String: String] = [:]
        if let first = addresses.first { environment["CAPSTAN_INSTANCE_IP"] = first }
        return NetworkAttachment(instanceID: id, addresses: addresses, ports: record.ports, environment: environment)
    }
}

/// ``ClusterNetwork`` as saved in the plugin's state (the SDK type is not Codable).
struct ClusterNetworkRecord: Codable {
    var nodeName, podCIDR, clusterCIDR, serviceCIDR: String
    var nodeAddress: String?
    var peers: [[String]]
    init(_ network: ClusterNetwork) {
        (nodeName, podCIDR, clusterCIDR, serviceCIDR, nodeAddress) = (network.nodeName, network.podCIDR, network.clusterCIDR, network.serviceCIDR, network.nodeAddress)
        peers = network.peers.map { [$0.nodeName, $0.address, $0.podCIDR] }
    }
}

extension CNINetwork.SavedCluster {
    var restored: ClusterNetwork {
        ClusterNetwork(nodeName: network.nodeName, podCIDR: network.podCIDR, clusterCIDR: network.clusterCIDR, serviceCIDR: network.serviceCIDR, nodeAddress: network.nodeAddress,
                       peers: network.peers.compactMap { $0.count == 3 ? NetworkPeer(nodeName: $0[0], address: $0[1], podCIDR: $0[2]) : nil })
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "cni", version: "1.0.0", kinds: [.network]) { registrar in
        try registrar.register(network: "cni", configuration: CNIConfiguration.self) { configuration, context in
            try CNINetwork(configuration: configuration, context: context)
        }
    }
}
