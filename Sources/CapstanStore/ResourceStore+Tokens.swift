import CapstanCore
import Crypto
import Foundation
import GRDB

/// An API token as stored: its id, role and what it may act as, never its secret (only the
/// secret's SHA-256 is kept, so a copy of the database grants nothing).
public struct TokenRecord: Sendable, Hashable, Codable {
    /// The public half of the token (`<id>.<secret>`); names it in lists and audit lines.
    public var id: String
    /// `admin`, `viewer` or `node`.
    public var role: String
    /// For `node` tokens: the one node it acts as.
    public var node: String?
    public var description: String
    public var created: Timestamp
    var secretSHA256: [UInt8]

    enum CodingKeys: String, CodingKey { case id, role, node, description, created }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        role = try container.decode(String.self, forKey: .role)
        node = try container.decodeIfPresent(String.self, forKey: .node)
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        created = try container.decode(Timestamp.self, forKey: .created)
        secretSHA256 = []
    }

    init(id: String, role: String, node: String?, description: String, created: Timestamp, secretSHA256: [UInt8]) {
        self.id = id
        self.role = role
        self.node = node
        self.description = description
        self.created = created
        self.secretSHA256 = secretSHA256
    }
}

extension TokenRecord {
    /// The record of a presented token (`<id>.<secret>`) found by `lookup`, or nil when it is
    /// unknown, revoked or malformed. The secret is compared in constant time.
    static func match(_ token: String, _ lookup: (String) -> TokenRecord?) -> TokenRecord? {
        guard token.utf8.count <= 256, let dot = token.firstIndex(of: ".") else { return nil }
        let id = String(token[..<dot])
        let secret = token[token.index(after: dot)...]
        guard let record = lookup(id) else { return nil }
        let presented = Array(SHA256.hash(data: Data(secret.utf8)))
        var difference: UInt8 = 0
        for (a, b) in zip(presented, record.secretSHA256) { difference |= a ^ b }
        return difference == 0 && presented.count == record.secretSHA256.count ? record : nil
    }
}

extension ResourceStore {
    /// Creates a token; returns its record and the whole token (`<id>.<secret>`), which is shown
    /// once and never stored.
    public func createToken(role: String, node: String? = nil, description: String = "") throws(StoreError) -> (record: TokenRecord, token: String) {
        let id = Self.randomHex(bytes: 6)
        let secret = Self.randomHex(bytes: 32)
        let record = TokenRecord(id: id, role: role, node: node, description: description,
                                 created: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970), secretSHA256: Array(SHA256.hash(data: Data(secret.utf8))))
        do {
            try pool.write { db in
                try db.execute(sql: "INSERT INTO tokens (id, secret_sha256, role, node, description, created) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [record.id, Data(record.secretSHA256), record.role, record.node, record.description, record.created.secondsSinceEpoch])
            }
        } catch {
            throw .storage("\(error)")
        }
        tokenCache.withLock { cache in cache?[id] = record }
        return (record, "\(id).\(secret)")
    }

    /// Every token, oldest first.
    public func tokens() throws(StoreError) -> [TokenRecord] {
        try loadedTokens().values.sorted { ($0.created, $0.id) < ($1.created, $1.id) }
    }

    /// Revokes a token at once; false when there was none of that id.
    @discardableResult
    public func revokeToken(id: String) throws(StoreError) -> Bool {
        let removed: Bool
        do {
            removed = try pool.write { db in
                try db.execute(sql: "DELETE FROM tokens WHERE id = ?", arguments: [id])
                return db.changesCount > 0
            }
        } catch {
            throw .storage("\(error)")
        }
        tokenCache.withLock { cache in _ = cache?.removeValue(forKey: id) }
        return removed
    }

    /// The record of a presented token, or nil when it is unknown, revoked or malformed. The
    /// secret is compared in constant time.
    public func authenticate(_ token: String) -> TokenRecord? {
        guard let tokens = try? loadedTokens() else { return nil }
        return TokenRecord.match(token) { tokens[$0] }
    }

    private func loadedTokens() throws(StoreError) -> [String: TokenRecord] {
        if let cached = tokenCache.withLock({ $0 }) { return cached }
        let rows: [Row]
        do {
            rows = try pool.read { db in try Row.fetchAll(db, sql: "SELECT id, secret_sha256, role, node, description, created FROM tokens") }
        } catch {
            throw .storage("\(error)")
        }
        var loaded: [String: TokenRecord] = [:]
        for row in rows {
            let hash: Data = row["secret_sha256"]
            let record = TokenRecord(id: row["id"], role: row["role"], node: row["node"], description: row["description"],
                                     created: Timestamp(secondsSinceEpoch: row["created"]), secretSHA256: Array(hash))
            loaded[record.id] = record
        }
        tokenCache.withLock { $0 = loaded }
        return loaded
    }

    static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }
}
