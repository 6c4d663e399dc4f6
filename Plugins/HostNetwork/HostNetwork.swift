import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Settings of the host network plugin.
struct HostNetworkConfiguration: PluginConfiguration {
    /// Host ports handed out when an instance asks for none in particular.
    var portRangeStart: Int
    var portRangeEnd: Int

    enum CodingKeys: String, CodingKey, CaseIterable { case portRangeStart, portRangeEnd }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        portRangeStart = try container.decodeIfPresent(Int.self, forKey: .portRangeStart) ?? 30000
        portRangeEnd = try container.decodeIfPresent(Int.self, forKey: .portRangeEnd) ?? 32767
    }

    func validate() -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if !(1...65535).contains(portRangeStart) { problems.append(ValidationProblem(path: "portRangeStart", message: "\(portRangeStart) is not a port (1-65535)")) }
        if !(1...65535).contains(portRangeEnd) { problems.append(ValidationProblem(path: "portRangeEnd", message: "\(portRangeEnd) is not a port (1-65535)")) }
        if portRangeStart > portRangeEnd { problems.append(ValidationProblem(path: "portRangeEnd", message: "\(portRangeEnd) is below portRangeStart \(portRangeStart)")) }
        return problems
    }
}

/// Host networking: instances share the node's network namespace and addresses. What this
/// plugin manages is host ports: it allocates them, refuses conflicts (with another instance,
/// or with any process already bound to the port), and tells the instance its ports through
/// `PORT` and `PORT_<NAME>`. Allocations persist in the state directory, so an agent restart
/// keeps them.
actor HostNetwork: NetworkPlugin {
    struct Allocation: Codable, Equatable {
        var instanceID: String
        var ports: [PortMapping]
        var environment: [String: String]
    }

    nonisolated let configuration: HostNetworkConfiguration
    nonisolated let stateFile: URL
    private var allocations: [String: Allocation]

    init(configuration: HostNetworkConfiguration, context: PluginContext) throws {
        self.configuration = configuration
        stateFile = URL(fileURLWithPath: context.stateDirectory).appendingPathComponent("allocations.json")
        if let data = FileManager.default.contents(atPath: stateFile.path) {
            allocations = try JSONDecoder().decode([String: Allocation].self, from: data)
        } else {
            allocations = [:]
        }
    }

    nonisolated var capabilities: NetworkCapabilities { NetworkCapabilities(isolatedNamespaces: false, portMapping: false) }

    func attach(_ request: NetworkAttachRequest) async throws -> NetworkAttachment {
        if let existing = allocations[request.instanceID] { return attachment(existing) }
        // No ports: nothing to allocate or remember.
        if request.ports.isEmpty {
            return NetworkAttachment(instanceID: request.instanceID, addresses: HostNetwork.hostAddresses(), ports: [])
        }
        var taken = Set(allocations.values.flatMap { $0.ports.map { PortKey(port: $0.hostPort, protocol: $0.protocol) } })
        var mappings: [PortMapping] = []
        var environment: [String: String] = [:]
        for (index, port) in request.ports.enumerated() {
            let proto = (port.protocol ?? "tcp").lowercased()
            guard proto == "tcp" || proto == "udp" else {
                throw PluginError(.invalidArgument, "ports[\(index)].protocol \"\(proto)\" is not tcp or udp")
            }
            let hostPort: Int
            if let wanted = port.hostPort, wanted > 0 {
                let key = PortKey(port: wanted, protocol: proto)
                if taken.contains(key) {
                    let owner = allocations.values.first { $0.ports.contains { $0.hostPort == wanted && $0.protocol == proto } }?.instanceID ?? "another port of this instance"
                    throw PluginError(.alreadyExists, "host port \(wanted)/\(proto) is already allocated to \(owner)")
                }
                guard HostNetwork.isFree(wanted, proto) else {
                    throw PluginError(.resourceExhausted, "host port \(wanted)/\(proto) is in use on this host by a process Capstan does not manage")
                }
                hostPort = wanted
            } else {
                guard let free = (configuration.portRangeStart...configuration.portRangeEnd).first(where: { !taken.contains(PortKey(port: $0, protocol: proto)) && HostNetwork.isFree($0, proto) }) else {
                    throw PluginError(.resourceExhausted, "no free \(proto) port left in \(configuration.portRangeStart)-\(configuration.portRangeEnd)")
                }
                hostPort = free
            }
            taken.insert(PortKey(port: hostPort, protocol: proto))
            mappings.append(PortMapping(containerPort: port.containerPort, hostPort: hostPort, protocol: proto))
            if index == 0 { environment["PORT"] = String(hostPort) }
            if let name = port.name {
                environment["PORT_\(name.uppercased().replacingOccurrences(of: "-", with: "_"))"] = String(hostPort)
            }
        }
        let allocation = Allocation(instanceID: request.instanceID, ports: mappings, environment: environment)
        allocations[request.instanceID] = allocation
        try save()
        return attachment(allocation)
    }

    func detach(_ request: NetworkDetachRequest) async throws {
        guard allocations.removeValue(forKey: request.instanceID) != nil else { return }
        try save()
    }

    func check(_ request: NetworkCheckRequest) async throws -> NetworkAttachment {
        guard let allocation = allocations[request.instanceID] else {
            throw PluginError(.notFound, "instance \"\(request.instanceID)\" is not attached")
        }
        return attachment(allocation)
    }

    func status() async throws -> NetworkStatus {
        let addresses = HostNetwork.hostAddresses()
        return NetworkStatus(healthy: !addresses.isEmpty, attachments: allocations.count, message: "host network, addresses \(addresses.joined(separator: ", "))")
    }

    private func attachment(_ allocation: Allocation) -> NetworkAttachment {
        NetworkAttachment(instanceID: allocation.instanceID, addresses: HostNetwork.hostAddresses(), ports: allocation.ports, environment: allocation.environment)
    }

    private func save() throws {
        try FileManager.default.createDirectory(at: stateFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try JSONEncoder().encode(allocations).write(to: stateFile, options: .atomic)
    }

    struct PortKey: Hashable {
        var port: Int
        var `protocol`: String
    }

    /// True when nothing on this host is bound to the port (probed by binding it ourselves).
    static func isFree(_ port: Int, _ proto: String) -> Bool {
        let fd = socket(AF_INET, proto == "udp" ? Int32(SOCK_DGRAM.rawValue) : Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr = in_addr(s_addr: INADDR_ANY)
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    /// The host's IPv4 addresses, non-loopback first; loopback when it has no other.
    static func hostAddresses() -> [String] {
        var first: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&first) == 0 else { return ["127.0.0.1"] }
        defer { freeifaddrs(first) }
        var addresses: [String] = []
        var current = first
        while let entry = current {
            defer { current = entry.pointee.ifa_next }
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET) else { continue }
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { inet in
                var inAddress = inet.pointee.sin_addr
                _ = inet_ntop(AF_INET, &inAddress, &text, socklen_t(INET_ADDRSTRLEN))
            }
            let string = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if !addresses.contains(string) { addresses.append(string) }
        }
        let external = addresses.filter { !$0.hasPrefix("127.") }
        return external.isEmpty ? ["127.0.0.1"] : external
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "host-network", version: "1.0.0", kinds: [.network]) { registrar in
        try registrar.register(network: "host", configuration: HostNetworkConfiguration.self) { configuration, context in
            try HostNetwork(configuration: configuration, context: context)
        }
    }
}
