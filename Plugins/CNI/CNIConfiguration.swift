import CapstanSDK
import Foundation

/// Settings of the `cni` network plugin (`capstan.yaml`, under the plugin's `config`).
struct CNIConfiguration: PluginConfiguration {
    /// Where the CNI plugin programs are looked for, in order (CNI_PATH).
    var binDirs: [String]
    /// A network configuration list (`.conflist`) to use instead of the built-in one.
    var conflist: String?
    /// The built-in list's Linux bridge.
    var bridge: String
    /// The interface name inside each instance.
    var interface: String
    /// The built-in list masquerades instances' traffic to outside the cluster CIDR.
    var ipMasq: Bool
    /// Seconds one CNI plugin call may take.
    var timeout: Double

    enum CodingKeys: String, CodingKey, CaseIterable { case binDirs, conflist, bridge, interface, ipMasq, timeout }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        binDirs = try container.decodeIfPresent([String].self, forKey: .binDirs) ?? ["/usr/lib/cni", "/opt/cni/bin"]
        conflist = try container.decodeIfPresent(String.self, forKey: .conflist)
        bridge = try container.decodeIfPresent(String.self, forKey: .bridge) ?? "capstan0"
        interface = try container.decodeIfPresent(String.self, forKey: .interface) ?? "eth0"
        ipMasq = try container.decodeIfPresent(Bool.self, forKey: .ipMasq) ?? false
        timeout = try container.decodeIfPresent(Double.self, forKey: .timeout) ?? 30
    }

    func validate() -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if binDirs.isEmpty { problems.append(ValidationProblem(path: "binDirs", message: "is empty; name the folders holding the CNI plugins (Debian: /usr/lib/cni)")) }
        for (index, folder) in binDirs.enumerated() where !folder.hasPrefix("/") || folder.contains(":") {
            problems.append(ValidationProblem(path: "binDirs[\(index)]", message: "\"\(folder)\" is not an absolute path without ':'"))
        }
        if let conflist, !conflist.hasPrefix("/") { problems.append(ValidationProblem(path: "conflist", message: "\"\(conflist)\" is not an absolute path")) }
        if !Self.isInterfaceName(bridge) { problems.append(ValidationProblem(path: "bridge", message: "\"\(bridge)\" is not an interface name (1-15 letters, digits, '-', '_', '.')")) }
        if !Self.isInterfaceName(interface) { problems.append(ValidationProblem(path: "interface", message: "\"\(interface)\" is not an interface name (1-15 letters, digits, '-', '_', '.')")) }
        if !(timeout >= 1 && timeout <= 600) { problems.append(ValidationProblem(path: "timeout", message: "\(timeout) is not 1-600 seconds")) }
        return problems
    }

    static func isInterfaceName(_ name: String) -> Bool {
        (1...15).contains(name.utf8.count) && name.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
    }
}

/// A CNI network configuration list, as JSON objects (each plugin's keys pass through).
struct NetworkList: Sendable {
    var name: String
    /// The version the list asks for; nil lets the host pick the newest all its plugins speak.
    var cniVersion: String?
    var plugins: [[String: JSONValue]]

    /// Parses a `.conflist`, naming what is wrong.
    init(data: Data, source: String) throws {
        guard let object = try? JSONDecoder().decode(JSONValue.self, from: data), case .object(let root) = object else {
            throw PluginError(.invalidArgument, "\(source): not a JSON object; a CNI network list has name, cniVersion and plugins")
        }
        guard case .string(let name)? = root["name"], !name.isEmpty else { throw PluginError(.invalidArgument, "\(source): name is missing") }
        self.name = name
        if let version = root["cniVersion"] {
            guard case .string(let text) = version else { throw PluginError(.invalidArgument, "\(source): cniVersion is not a string") }
            cniVersion = text
        }
        guard case .array(let list)? = root["plugins"], !list.isEmpty else { throw PluginError(.invalidArgument, "\(source): plugins is missing or empty") }
        plugins = []
        for (index, item) in list.enumerated() {
            guard case .object(let plugin) = item else { throw PluginError(.invalidArgument, "\(source): plugins[\(index)] is not an object") }
            guard case .string(let type)? = plugin["type"], !type.isEmpty, !type.contains("/"), !type.hasPrefix(".") else {
                throw PluginError(.invalidArgument, "\(source): plugins[\(index)].type is missing or not a plugin name")
            }
            plugins.append(plugin)
        }
    }

    init(name: String, cniVersion: String?, plugins: [[String: JSONValue]]) {
        (self.name, self.cniVersion, self.plugins) = (name, cniVersion, plugins)
    }

    /// The built-in list: a bridge with the node's subnet (host-local addresses), port mapping.
    static func builtIn(_ configuration: CNIConfiguration, ipamDirectory: String) -> NetworkList {
        let bridge: [String: JSONValue] = [
            "type": "bridge", "bridge": .string(configuration.bridge), "isGateway": true, "ipMasq": .bool(configuration.ipMasq), "hairpinMode": true,
            "ipam": ["type": "host-local", "dataDir": .string(ipamDirectory)],
        ]
        let portmap: [String: JSONValue] = ["type": "portmap", "capabilities": ["portMappings": true], "snat": true]
        return NetworkList(name: "capstan", cniVersion: nil, plugins: [bridge, portmap])
    }

    func type(at index: Int) -> String {
        if case .string(let type)? = plugins[index]["type"] { return type }
        return ""
    }
}

/// Any JSON value, so plugin configurations pass through untouched.
indirect enum JSONValue: Codable, Sendable, Hashable, ExpressibleByStringLiteral, ExpressibleByBooleanLiteral, ExpressibleByDictionaryLiteral {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(stringLiteral value: String) { self = .string(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last })) }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null } else if let value = try? container.decode(Bool.self) { self = .bool(value) } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) { self = .string(value) } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value):
            if value == value.rounded(), abs(value) < 1e15 { try container.encode(Int64(value)) } else { try container.encode(value) }
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }

    subscript(key: String) -> JSONValue? {
        if case .object(let object) = self { return object[key] }
        return nil
    }

    var string: String? { if case .string(let value) = self { return value } else { return nil } }
}
