/// A stable name, a virtual IP and ports in front of the ready instances that match a selector.
public typealias Service = Resource<ServiceSpec>

public struct ServiceSpec: ResourceSpec {
    public static let kind = "Service"
    /// `spec.clusterIP: None`: a headless service (no virtual IP; DNS answers with the ready
    /// endpoints' addresses).
    public static let headless = "None"
    /// The load-balancing algorithms the default data plane (nftables) offers.
    public static let algorithms = ["random", "roundrobin", "sourcehash"]

    /// Labels an instance must carry to be a backend.
    public var selector: [String: String]
    public var ports: [ServicePort]
    /// The load-balancer plugin; the configured default when nil.
    public var loadBalancer: String?
    /// The virtual IP (SDK 1.4): allocated by the server from the service CIDR when left out,
    /// kept for the service's life; `None` for a headless service. A client may ask for a
    /// particular free address in the CIDR.
    public var clusterIP: String?
    /// `ClusterIP` (the default and, for now, the only type).
    public var type: String?
    /// How connections are spread (SDK 1.4): `random` (default), `roundrobin`, or
    /// `sourcehash` (one client address sticks to one backend). The load-balancer plugin must
    /// offer it.
    public var algorithm: String?

    public init(selector: [String: String], ports: [ServicePort], loadBalancer: String? = nil) {
        self.selector = selector
        self.ports = ports
        self.loadBalancer = loadBalancer
    }

    public typealias Status = ServiceStatus
    public static var initialStatus: ServiceStatus { ServiceStatus() }

    /// True for `clusterIP: None`.
    public var isHeadless: Bool { clusterIP == Self.headless }

    enum CodingKeys: String, CodingKey, CaseIterable { case selector, ports, loadBalancer, clusterIP, type, algorithm }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        selector = try container.decodeIfPresent([String: String].self, forKey: .selector) ?? [:]
        ports = try container.decodeIfPresent([ServicePort].self, forKey: .ports) ?? []
        loadBalancer = try container.decodeIfPresent(String.self, forKey: .loadBalancer)
        clusterIP = try container.decodeIfPresent(String.self, forKey: .clusterIP)
        type = try container.decodeIfPresent(String.self, forKey: .type)
        algorithm = try container.decodeIfPresent(String.self, forKey: .algorithm)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(selector, forKey: .selector)
        try container.encode(ports, forKey: .ports)
        try container.encodeIfPresent(loadBalancer, forKey: .loadBalancer)
        try container.encodeIfPresent(clusterIP, forKey: .clusterIP)
        try container.encodeIfPresent(type, forKey: .type)
        try container.encodeIfPresent(algorithm, forKey: .algorithm)
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if selector.isEmpty { problems.append(ValidationProblem(path: "\(path).selector", message: "is empty; a service selects its backends by labels")) }
        if ports.isEmpty { problems.append(ValidationProblem(path: "\(path).ports", message: "is empty; give at least one port")) }
        if ports.count > FieldLimits.maxListEntries {
            problems.append(ValidationProblem(path: "\(path).ports", message: "has \(ports.count) entries; at most \(FieldLimits.maxListEntries)"))
        }
        var seenPorts: [String: Int] = [:]
        var seenNames: [String: Int] = [:]
        for (index, port) in ports.enumerated().prefix(FieldLimits.maxListEntries) {
            let at = "\(path).ports[\(index)]"
            if !(1...65535).contains(port.port) { problems.append(ValidationProblem(path: "\(at).port", message: "\(port.port) is not a port (1-65535)")) }
            if let name = port.targetPortName {
                if !PortName.isValid(name) { problems.append(ValidationProblem(path: "\(at).targetPort", message: "\"\(name.prefix(64))\" is neither a port number (1-65535) nor a port name (1-15 lowercase letters, digits and '-', with a letter)")) }
            } else if !(1...65535).contains(port.targetPort) {
                problems.append(ValidationProblem(path: "\(at).targetPort", message: "\(port.targetPort) is not a port (1-65535)"))
            }
            let proto = port.protocol ?? "tcp"
            if proto != "tcp" && proto != "udp" { problems.append(ValidationProblem(path: "\(at).protocol", message: "\"\(proto.prefix(16))\" is not tcp or udp")) }
            let key = "\(port.port)/\(proto)"
            if let first = seenPorts[key] {
                problems.append(ValidationProblem(path: "\(at).port", message: "\(key) is also ports[\(first)]; each port and protocol once"))
            } else {
                seenPorts[key] = index
            }
            if let name = port.name {
                if !PortName.isValid(name) { problems.append(ValidationProblem(path: "\(at).name", message: "\"\(name.prefix(64))\" is not a port name (1-15 lowercase letters, digits and '-', with a letter)")) }
                if let first = seenNames[name] { problems.append(ValidationProblem(path: "\(at).name", message: "\"\(name)\" is also the name of ports[\(first)]")) } else { seenNames[name] = index }
            } else if ports.count > 1 {
                problems.append(ValidationProblem(path: "\(at).name", message: "is missing; a service with several ports names each one"))
            }
        }
        if let clusterIP, clusterIP != Self.headless, IPv4Address(clusterIP) == nil {
            problems.append(ValidationProblem(path: "\(path).clusterIP", message: "\"\(clusterIP.prefix(64))\" is not an IPv4 address or None; leave it out to get one from the service CIDR"))
        }
        if let type, type != "ClusterIP" {
            problems.append(ValidationProblem(path: "\(path).type", message: "\"\(type.prefix(32))\" is not a service type this cluster offers; use ClusterIP (or leave it out)"))
        }
        if let algorithm, !Self.algorithms.contains(algorithm) {
            problems.append(ValidationProblem(path: "\(path).algorithm", message: "\"\(algorithm.prefix(32))\" is not one of \(Self.algorithms.joined(separator: ", "))"))
        }
        if let loadBalancer, loadBalancer.isEmpty || loadBalancer.utf8.count > 63 {
            problems.append(ValidationProblem(path: "\(path).loadBalancer", message: "must be a plugin name of 1-63 characters, or left out for the configured default"))
        }
        return problems
    }
}

/// What the control plane observed of a service (SDK 1.4).
public struct ServiceStatus: Codable, Sendable, Hashable {
    /// `Endpoints` (are there ready backends?) and `Programmed` (did every node's load balancer
    /// take it?), each with a reason when false.
    public var conditions: [Condition]
    /// How many ready endpoints it has.
    public var readyEndpoints: Int

    public init(conditions: [Condition] = [], readyEndpoints: Int = 0) {
        self.conditions = conditions
        self.readyEndpoints = readyEndpoints
    }

    enum CodingKeys: String, CodingKey { case conditions, readyEndpoints }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        conditions = try container.decodeIfPresent([Condition].self, forKey: .conditions) ?? []
        readyEndpoints = try container.decodeIfPresent(Int.self, forKey: .readyEndpoints) ?? 0
    }
}

public struct ServicePort: Codable, Sendable, Hashable {
    public var name: String?
    /// The port clients connect to.
    public var port: Int
    /// The port the backends listen on; 0 when ``targetPortName`` names it.
    public var targetPort: Int
    /// `targetPort` given by name (SDK 1.4): the instance port of that `name`.
    public var targetPortName: String?
    /// `tcp` (default) or `udp` (SDK 1.4).
    public var `protocol`: String?

    public init(name: String? = nil, port: Int, targetPort: Int) {
        self.name = name
        self.port = port
        self.targetPort = targetPort
    }

    public init(name: String? = nil, port: Int, targetPortName: String, protocol: String? = nil) {
        self.name = name
        self.port = port
        self.targetPort = 0
        self.targetPortName = targetPortName
        self.protocol = `protocol`
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case name, port, targetPort, `protocol` }

    /// `targetPort` is a number or a port name, and defaults to `port`.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        port = try container.decode(Int.self, forKey: .port)
        `protocol` = try container.decodeIfPresent(String.self, forKey: .protocol)?.lowercased()
        if let number = try? container.decodeIfPresent(Int.self, forKey: .targetPort) {
            targetPort = number
        } else if let text = try container.decodeIfPresent(String.self, forKey: .targetPort) {
            if let number = Int(text) { targetPort = number } else {
                targetPort = 0
                targetPortName = text
            }
        } else {
            targetPort = port
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encode(port, forKey: .port)
        if let targetPortName { try container.encode(targetPortName, forKey: .targetPort) } else { try container.encode(targetPort, forKey: .targetPort) }
        try container.encodeIfPresent(`protocol`, forKey: .protocol)
    }
}

/// Port names (an instance's `ports[].name`, a service's `targetPort` by name): like
/// Kubernetes' IANA_SVC_NAME, 1-15 lowercase letters, digits and `-`, with at least one letter.
public enum PortName {
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...15).contains(bytes.count), bytes.first != UInt8(ascii: "-"), bytes.last != UInt8(ascii: "-") else { return false }
        var letter = false
        for c in bytes {
            if c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z") { letter = true; continue }
            if (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") { continue }
            return false
        }
        return letter
    }
}

/// An IPv4 address as four octets, parsed strictly (`10.96.0.1`; no leading zeros, no
/// shorthand) — what Services, nodes' pod subnets and network plugins exchange.
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  part.count == 1 || part.first != "0", let octet = UInt32(part), octet <= 255 else { return nil }
            value = value << 8 | octet
        }
        self.value = value
    }

    public var description: String { "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)" }
    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }
}

/// An IPv4 network in CIDR notation (`10.244.0.0/16`).
public struct IPv4Network: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv4Address
    public var prefixLength: Int

    /// Refuses host bits set past the prefix (`10.244.0.1/16`), so a typo is not silently moved.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(String(parts[0])), parts[1].count <= 2, let length = Int(parts[1]), (0...32).contains(length) else { return nil }
        self.init(address: address, prefixLength: length)
        guard address.value & ~mask == 0 else { return nil }
    }

    public init(address: IPv4Address, prefixLength: Int) {
        self.address = address
        self.prefixLength = max(0, min(32, prefixLength))
    }

    /// The network's mask (0 for /0).
    public var mask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength) }
    /// How many addresses it spans (2^(32-prefix)).
    public var size: UInt64 { UInt64(1) << UInt64(32 - prefixLength) }
    public func contains(_ other: IPv4Address) -> Bool { other.value & mask == address.value }
    /// True when the two networks share an address.
    public func overlaps(_ other: IPv4Network) -> Bool {
        let shorter = min(prefixLength, other.prefixLength)
        let common: UInt32 = shorter == 0 ? 0 : UInt32.max << UInt32(32 - shorter)
        return address.value & common == other.address.value & common
    }
    /// The `index`th address in the network, nil past its end.
    public func address(at index: UInt64) -> IPv4Address? {
        guard index < size else { return nil }
        return IPv4Address(address.value &+ UInt32(truncatingIfNeeded: index))
    }
    /// The `index`th subnet of `length` bits (longer than this network's), nil past the end.
    public func subnet(_ index: UInt64, length: Int) -> IPv4Network? {
        guard length >= prefixLength, length <= 32 else { return nil }
        let count = UInt64(1) << UInt64(length - prefixLength)
        guard index < count else { return nil }
        let step = UInt64(1) << UInt64(32 - length)
        return IPv4Network(address: IPv4Address(address.value &+ UInt32(truncatingIfNeeded: index &* step)), prefixLength: length)
    }
    public var description: String { "\(address)/\(prefixLength)" }
}

/// The addresses behind a service, kept by the endpoints controller.
public typealias Endpoints = Resource<EndpointsSpec>

public struct EndpointsSpec: ResourceSpec {
    public static let kind = "Endpoints"
    public var addresses: [EndpointAddress]

    public init(addresses: [EndpointAddress] = []) { self.addresses = addresses }
}

public struct EndpointAddress: Codable, Sendable, Hashable {
    public var instance: String
    public var node: String?
    public var address: String
    public var port: Int
    public var ready: Bool
    /// The service port this address serves (its `name`; SDK 1.4), for services with several.
    public var portName: String?
    /// `tcp` or `udp` (SDK 1.4).
    public var `protocol`: String?

    public init(instance: String, node: String? = nil, address: String, port: Int, ready: Bool) {
        self.instance = instance
        self.node = node
        self.address = address
        self.port = port
        self.ready = ready
    }

    enum CodingKeys: String, CodingKey { case instance, node, address, port, ready, portName, `protocol` }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        instance = try container.decode(String.self, forKey: .instance)
        node = try container.decodeIfPresent(String.self, forKey: .node)
        address = try container.decode(String.self, forKey: .address)
        port = try container.decode(Int.self, forKey: .port)
        ready = try container.decodeIfPresent(Bool.self, forKey: .ready) ?? true
        portName = try container.decodeIfPresent(String.self, forKey: .portName)
        `protocol` = try container.decodeIfPresent(String.self, forKey: .protocol)
    }
}
