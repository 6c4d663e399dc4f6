import Foundation

/// What a runtime's per-instance record must carry for ``InstanceFolders`` to derive the
/// instance's state from the shim's files: who owns it and how its shim was started.
///
/// The properties are stored flat in `instance.json`, so a record type can add its own fields
/// without moving these.
public protocol SupervisedInstance: Codable, Sendable {
    var id: String { get }
    var labels: [String: String] { get }
    /// The shim's pid (and process group); nil before the first start.
    var shimPID: Int32? { get set }
    var shimStartTicks: UInt64? { get set }
    var startedAt: Double? { get set }
    var finishedAt: Double? { get set }
    /// Set when the runtime killed it with SIGKILL after the grace period.
    var forcedKill: Bool { get set }
}

extension SupervisedInstance {
    /// Records a fresh start under the shim `pid`, forgetting the previous run.
    public mutating func started(shim pid: Int32) {
        shimPID = pid
        shimStartTicks = ProcessInspection.startTicks(of: pid)
        startedAt = Date().timeIntervalSince1970
        finishedAt = nil
        forcedKill = false
    }
}
