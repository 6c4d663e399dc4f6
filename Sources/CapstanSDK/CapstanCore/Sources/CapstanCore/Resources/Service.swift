/// A stable name and ports in front of the ready instances that match a selector.
public typealias Service = Resource<ServiceSpec>

public struct ServiceSpec: ResourceSpec {
    public static let kind = "Service"
    /// Labels an instance must carry to be a backend.
    public var selector: [String: String]
    public var ports: [ServicePort]
    /// The load-balancer plugin; the configured default when nil.
    public var loadBalancer: String?

    public init(selector: [String: String], ports: [ServicePort], loadBalancer: String? = nil) {
        self.selector = selector
        self.ports = ports
        self.loadBalancer = loadBalancer
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if selector.isEmpty { problems.append(ValidationProblem(path: "\(path).selector", message: "is empty; a service selects its backends by labels")) }
        if ports.isEmpty { problems.append(ValidationProblem(path: "\(path).ports", message: "is empty; give at least one port")) }
        for (index, port) in ports.enumerated() {
            if !(1...65535).contains(port.port) { problems.append(ValidationProblem(path: "\(path).ports[\(index)].port", message: "\(port.port) is not a port (1-65535)")) }
            if !(1...65535).contains(port.targetPort) { problems.append(ValidationProblem(path: "\(path).ports[\(index)].targetPort", message: "\(port.targetPort) is not a port (1-65535)")) }
        }
        return problems
    }
}

public struct ServicePort: Codable, Sendable, Hashable {
    public var name: String?
    /// The port clients connect to.
    public var port: Int
    /// The port the backends listen on.
    public var targetPort: Int

    public init(name: String? = nil, port: Int, targetPort: Int) {
        self.name = name
        self.port = port
        self.targetPort = targetPort
    }
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

    public init(instance: String, node: String? = nil, address: String, port: Int, ready: Bool) {
        self.instance = instance
        self.node = node
        self.address = address
        self.port = port
        self.ready = ready
    }
}
