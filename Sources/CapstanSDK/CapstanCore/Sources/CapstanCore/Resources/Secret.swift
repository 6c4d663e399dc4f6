/// Small pieces of confidential data — passwords, keys, tokens — given to instances as files on
/// a tmpfs or as environment variables. Encrypted at rest by the store (AES-GCM), never printed
/// by `capstan get` without `--show-secrets`, and readable only by admins and by the agents of
/// nodes whose instances use them.
public typealias Secret = Resource<SecretSpec>

public struct SecretSpec: ResourceSpec {
    public static let kind = "Secret"
    /// Key → value. In a manifest, `data` holds base64 (as in Kubernetes) and `stringData`
    /// plain text; both end up here, as the values' bytes.
    public var data: [String: [UInt8]]

    public init(data: [String: [UInt8]]) { self.data = data }

    /// The most bytes all values of one secret may hold together.
    public static let maxBytes = 1 << 20

    enum CodingKeys: String, CodingKey, CaseIterable { case data, stringData }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        var data: [String: [UInt8]] = [:]
        for (key, text) in try container.decodeIfPresent([String: String].self, forKey: .data) ?? [:] {
            guard let bytes = Base64.decode(text) else {
                throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: container.codingPath + [CodingKeys.data, AnyCodingKey(key)],
                                                                        debugDescription: "is not base64; put plain text under stringData instead"))
            }
            data[key] = bytes
        }
        for (key, text) in try container.decodeIfPresent([String: String].self, forKey: .stringData) ?? [:] {
            data[key] = Array(text.utf8)
        }
        self.data = data
    }

    /// Always as base64 `data`.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(data.mapValues(Base64.encode), forKey: .data)
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        for key in data.keys.sorted() where !Self.isValidKey(key) {
            problems.append(ValidationProblem(path: "\(path).data.\(key.prefix(60))", message: "is not a secret key (letters, digits, '-', '_', '.'; at most 253; not . or ..): it becomes a file name"))
        }
        let total = data.values.reduce(0) { $0 + $1.count }
        if total > Self.maxBytes {
            problems.append(ValidationProblem(path: "\(path).data", message: "holds \(total) bytes; a secret may hold at most \(Self.maxBytes)"))
        }
        return problems
    }

    /// Letters, digits, `-`, `_`, `.`; at most 253; not `.` or `..`.
    public static func isValidKey(_ key: String) -> Bool {
        guard !key.isEmpty, key.utf8.count <= 253, key != ".", key != ".." else { return false }
        return key.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
        }
    }
}

/// Where a template's instances see a secret: its keys as files under `mountPath` (a tmpfs,
/// read-only), and/or chosen keys as environment variables.
public struct SecretMount: Codable, Sendable, Hashable {
    /// The Secret's name.
    public var secret: String
    /// The folder its keys appear in as files; for host processes, `CAPSTAN_SECRET_<NAME>`
    /// holds the folder's path instead.
    public var mountPath: String?
    /// Environment variable → the secret's key whose value it gets.
    public var env: [String: String]

    public init(secret: String, mountPath: String? = nil, env: [String: String] = [:]) {
        self.secret = secret
        self.mountPath = mountPath
        self.env = env
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case secret, mountPath, env }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        secret = try container.decode(String.self, forKey: .secret)
        mountPath = try container.decodeIfPresent(String.self, forKey: .mountPath)
        env = try container.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
    }

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let problem = DNSLabel.problem(with: secret) { problems.append(ValidationProblem(path: "\(path).secret", message: problem)) }
        if let mountPath, !mountPath.hasPrefix("/") { problems.append(ValidationProblem(path: "\(path).mountPath", message: "\"\(mountPath)\" is not an absolute path")) }
        if mountPath == nil && env.isEmpty { problems.append(ValidationProblem(path: path, message: "give a mountPath, env, or both")) }
        for (variable, key) in env.sorted(by: { $0.key < $1.key }) where !SecretSpec.isValidKey(key) || variable.isEmpty {
            problems.append(ValidationProblem(path: "\(path).env.\(variable)", message: "\"\(key)\" is not a secret key"))
        }
        return problems
    }
}

/// Base64 without Foundation (Core does not depend on it).
enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        output.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let a = bytes[index], b = index + 1 < bytes.count ? bytes[index + 1] : 0, c = index + 2 < bytes.count ? bytes[index + 2] : 0
            output.append(alphabet[Int(a >> 2)])
            output.append(alphabet[Int((a & 0x03) << 4 | b >> 4)])
            output.append(index + 1 < bytes.count ? alphabet[Int((b & 0x0f) << 2 | c >> 6)] : UInt8(ascii: "="))
            output.append(index + 2 < bytes.count ? alphabet[Int(c & 0x3f)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var values: [UInt8] = []
        var padding = 0
        for c in text.utf8 {
            if c == UInt8(ascii: "=") { padding += 1; continue }
            if c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r") { continue }
            guard padding == 0, let value = alphabet.firstIndex(of: c) else { return nil }
            values.append(UInt8(value))
        }
        guard padding <= 2, (values.count + padding) % 4 == 0 || padding == 0 && values.count % 4 != 1 else { return nil }
        var output: [UInt8] = []
        var index = 0
        while index + 1 < values.count {
            let a = values[index], b = values[index + 1]
            output.append(a << 2 | b >> 4)
            if index + 2 < values.count { output.append((b & 0x0f) << 4 | values[index + 2] >> 2) }
            if index + 3 < values.count { output.append((values[index + 2] & 0x03) << 6 | values[index + 3]) }
            index += 4
        }
        return output
    }
}
