import CapstanCore
import CapstanSDK
import CapstanSupervision

/// What the runtime keeps on disk per container, in `<root>/instances/<id>/instance.json`,
/// beside the bundle it wrote (`bundle/config.json`). With the shim's `pid` and `exit` files
/// and `runc state` it is all `list()` needs after a restart.
struct ContainerRecord: SupervisedInstance, Equatable {
    var id: String
    var image: String
    var command: [String]
    var env: [String: String]
    var workingDir: String?
    var limits: ResourceVector
    var mounts: [RuntimeMount]
    var hostname: String?
    var labels: [String: String]
    var securityContext: SecurityContext?
    /// The root file system the bundle uses (the image folder, or its unpacked copy).
    var rootfs: String
    var shimPID: Int32?
    var shimStartTicks: UInt64?
    var startedAt: Double?
    var finishedAt: Double?
    var forcedKill: Bool

    init(_ request: CreateInstanceRequest, image: String, rootfs: String) {
        id = request.id
        self.image = image
        command = request.command
        env = request.env
        workingDir = request.workingDir
        limits = request.limits
        mounts = request.mounts
        hostname = request.hostname
        labels = request.labels
        securityContext = request.securityContext
        self.rootfs = rootfs
        forcedKill = false
    }

    /// True when `request` describes the same container (for idempotent create).
    func matches(_ request: CreateInstanceRequest) -> Bool {
        image == request.image && command == request.command && env == request.env && workingDir == request.workingDir
            && limits == request.limits && mounts == request.mounts && hostname == request.hostname && labels == request.labels
            && securityContext == request.securityContext
    }
}
