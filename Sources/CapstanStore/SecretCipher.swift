import Crypto
import Foundation

/// Encrypts Secrets' values at rest with AES-256-GCM. The keys live beside the database in
/// `secrets.keys` (0600): one `<id> <base64 key>` line each, the first the one that seals; the
/// others still open what they sealed, so a rotation (``ResourceStore/rotateSecretsKey()``)
/// never strands a value. The database alone — a backup, a stolen copy — holds only sealed
/// values; metadata (names, labels) stays readable, as in Kubernetes' encryption at rest.
public final class SecretCipher: Sendable {
    public let path: String
    /// Id → key bytes; `current` seals. (Crypto's key type is not Sendable; its bytes are.)
    let keys: [String: Data]
    public let current: String

    /// A sealed value's prefix and version.
    static let scheme = "aesgcm-v1"

    /// Loads the keyring at `path`, creating it with one key when absent.
    public init(path: String) throws {
        self.path = path
        if !FileManager.default.fileExists(atPath: path) {
            try Self.write([Self.newKey()], to: path)
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw StoreError.storage("\(path) cannot be read")
        }
        var keys: [String: Data] = [:]
        var order: [String] = []
        for line in text.split(whereSeparator: \.isNewline) where !line.isEmpty {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let bytes = Data(base64Encoded: String(parts[1])), bytes.count == 32 else {
                throw StoreError.storage("\(path): \"\(line.prefix(20))…\" is not `<id> <base64 32-byte key>`")
            }
            keys[String(parts[0])] = bytes
            order.append(String(parts[0]))
        }
        guard let first = order.first else { throw StoreError.storage("\(path) holds no key") }
        self.keys = keys
        current = first
    }

    /// `aesgcm-v1:<key id>:<base64 nonce|ciphertext|tag>`.
    func seal(_ plaintext: Data) throws -> String {
        let box = try AES.GCM.seal(plaintext, using: SymmetricKey(data: keys[current]!))
        return "\(Self.scheme):\(current):\(box.combined!.base64EncodedString())"
    }

    func open(_ sealed: String) throws -> Data {
        let parts = sealed.split(separator: ":", maxSplits: 2)
        guard parts.count == 3, parts[0] == Self.scheme, let combined = Data(base64Encoded: String(parts[2])) else {
            throw StoreError.storage("a sealed secret is malformed")
        }
        guard let key = keys[String(parts[1])] else {
            throw StoreError.storage("a secret is sealed with key \(parts[1]), which \(path) does not hold; restore that key file")
        }
        return try AES.GCM.open(try AES.GCM.SealedBox(combined: combined), using: SymmetricKey(data: key))
    }

    /// A keyring with a new key first (it seals from now on) and every old one after it.
    static func rotated(at path: String) throws -> SecretCipher {
        let existing = (try? String(contentsOfFile: path, encoding: .utf8))?.split(whereSeparator: \.isNewline).map(String.init) ?? []
        try write([newKey()] + existing, to: path)
        return try SecretCipher(path: path)
    }

    static func newKey() -> String {
        let key = SymmetricKey(size: .bits256)
        let id = ResourceStore.randomHex(bytes: 4)
        return "\(id) " + key.withUnsafeBytes { Data($0).base64EncodedString() }
    }

    static func write(_ lines: [String], to path: String) throws {
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data((lines.joined(separator: "\n") + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw StoreError.storage("cannot write \(temporary)")
        }
        guard rename(temporary, path) == 0 else { throw StoreError.storage("cannot replace \(path)") }
    }

    // MARK: Stored form

    /// A Secret's JSON with `spec.data` replaced by `spec.sealed`; other kinds unchanged.
    func sealIfSecret(_ json: Data, kind: String) throws -> Data {
        guard kind == "Secret", var object = try JSONSerialization.jsonObject(with: json) as? [String: Any],
              var spec = object["spec"] as? [String: Any] else { return json }
        let data = try JSONSerialization.data(withJSONObject: spec["data"] ?? [String: Any](), options: [.sortedKeys])
        spec = ["sealed": try seal(data)]
        object["spec"] = spec
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }

    /// The stored JSON with `spec.sealed` opened back into `spec.data`.
    func openIfSealed(_ json: Data) throws -> Data {
        // Cheap test first: only sealed secrets hold the scheme's name.
        guard json.range(of: Data(Self.scheme.utf8)) != nil,
              var object = try JSONSerialization.jsonObject(with: json) as? [String: Any],
              object["kind"] as? String == "Secret", let spec = object["spec"] as? [String: Any], let sealed = spec["sealed"] as? String else { return json }
        object["spec"] = ["data": try JSONSerialization.jsonObject(with: try open(sealed))]
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }
}
