import CapstanSDK
import CapstanSupervision
import Foundation

/// What the runtime keeps on disk per instance, in `<root>/instances/<id>/instance.json`.
/// Together with the shim's `pid` and `exit` files it is all `list()` needs after a restart.
struct InstanceRecord: SupervisedInstance, Equatable {
    var id: String
    var command: [String]
    var env: [String: String]
    var workingDir: String?
    var labels: [String: String]
    /// The shim's pid (and process group); nil before the first start.
    var shimPID: Int32?
    var shimStartTicks: UInt64?
    var startedAt: Double?
    var finishedAt: Double?
    /// Set when the runtime killed it with SIGKILL after the grace period.
    var forcedKill: Bool
    /// `setpriv …` put before the command for its securityContext; nil runs it as the agent.
    var launcher: [String]?
    /// The network namespace it runs in (SDK 1.4); nil: the node's.
    var networkNamespace: String?
    /// The resolv.conf shown to it at /etc/resolv.conf, in a mount namespace of its own.
    var resolvConf: String?
    /// Volumes, shown at their container paths inside that mount namespace (when the path is a
    /// folder on the node); nil in records written before.
    var mounts: [RuntimeMount]?

    init(_ request: CreateInstanceRequest, launcher: [String]?) {
        id = request.id
        command = request.command
        env = request.env
        workingDir = request.workingDir
        labels = request.labels
        forcedKill = false
        self.launcher = launcher
        networkNamespace = request.networkNamespace
        resolvConf = request.resolvConf
        mounts = request.mounts.isEmpty ? nil : request.mounts
    }

    /// True when `request` describes the same instance (for idempotent create).
    func matches(_ request: CreateInstanceRequest, launcher: [String]?) -> Bool {
        command == request.command && env == request.env && workingDir == request.workingDir && labels == request.labels && self.launcher == launcher
            && networkNamespace == request.networkNamespace && resolvConf == request.resolvConf && (mounts ?? []) == request.mounts
    }
}
