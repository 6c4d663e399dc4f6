import CapstanStore

/// Who sent a request: the role of the bearer token it carried, and for a node's agent the node
/// it acts as.
struct Principal: Sendable, Hashable {
    enum Role: String, Sendable, CaseIterable {
        /// Everything clients may do: write specs of every kind, read everything, manage tokens.
        case admin
        /// Read everything; write nothing.
        case viewer
        /// A node's agent: its own Node, the Instances bound to it (their status), Events, the
        /// Volumes it provisions on itself and the binding of the claims they serve.
        case node
        /// Joins nodes (`POST /v1/join`) and nothing else, like kubeadm's bootstrap tokens.
        case join
    }

    var role: Role
    /// The node a `node` principal acts as.
    var node: String?
    /// The token's id (its public half), for audit lines.
    var tokenID: String

    /// `admin:<id>`, `viewer:<id>`, `node:<name>`.
    var name: String { role == .node ? "node:\(node ?? "?")" : "\(role.rawValue):\(tokenID)" }

    init(role: Role, node: String? = nil, tokenID: String) {
        self.role = role
        self.node = node
        self.tokenID = tokenID
    }

    init?(_ record: TokenRecord) {
        guard let role = Role(rawValue: record.role) else { return nil }
        if role == .node && record.node == nil { return nil }
        self.init(role: role, node: record.node, tokenID: record.id)
    }
}
