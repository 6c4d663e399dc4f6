/// One observation about an object, as Kubernetes' conditions: `type` names the aspect
/// (`Valid`, …), `status` says whether it holds, and `reason`/`message` say why.
///
/// Controllers set conditions in status; clients read them. A condition keeps its
/// `lastTransitionTime` while its status stays the same.
public struct Condition: Codable, Sendable, Hashable {
    /// The aspect observed, e.g. `Valid`.
    public var type: String
    /// Whether it holds.
    public var status: Bool
    /// One CamelCase word, e.g. `InvalidSpec`.
    public var reason: String
    /// What a person should know, and what to do.
    public var message: String
    /// When `status` last changed.
    public var lastTransitionTime: Timestamp?

    public init(type: String, status: Bool, reason: String, message: String, lastTransitionTime: Timestamp? = nil) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.lastTransitionTime = lastTransitionTime
    }
}

extension Array where Element == Condition {
    /// Sets the condition of `condition.type`, keeping the earlier transition time when its
    /// status did not change; returns true when anything changed.
    @discardableResult
    public mutating func set(_ condition: Condition) -> Bool {
        var condition = condition
        if let index = firstIndex(where: { $0.type == condition.type }) {
            if self[index].status == condition.status { condition.lastTransitionTime = self[index].lastTransitionTime }
            if self[index] == condition { return false }
            self[index] = condition
        } else {
            append(condition)
        }
        return true
    }

    /// Removes the condition of `type`; returns true when there was one.
    @discardableResult
    public mutating func remove(type: String) -> Bool {
        let before = count
        removeAll { $0.type == type }
        return count != before
    }
}
