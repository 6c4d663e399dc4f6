import CapstanCore

/// Creates, runs, stops and reports on instances on one node (like CRI or a Nomad task driver).
///
/// Conforming plugins must:
/// - keep instances running when the calling process exits (an agent restart must not stop
///   them), and find them again through ``list()`` so the agent can re-adopt them;
/// - make ``stop(_:)`` send a polite signal, wait up to the grace period, then force; it must
///   finish even when the calling task is cancelled;
/// - report exit codes; make ``remove(_:)`` succeed for unknown instances;
/// - throw ``PluginError/Code/notFound`` for unknown instances on calls that need one.
public protocol RuntimePlugin: Sendable {
    var capabilities: RuntimeCapabilities { get }
    /// Prepares an instance without starting it. Creating an existing ID with the same request
    /// returns its status.
    func create(_ request: CreateInstanceRequest) async throws -> RuntimeInstanceStatus
    /// Starts a created instance (or restarts an exited one).
    func start(_ id: String) async throws -> RuntimeInstanceStatus
    /// Stops politely, then by force after the grace period.
    func stop(_ request: StopInstanceRequest) async throws -> RuntimeInstanceStatus
    /// Sends a signal.
    func kill(_ request: KillInstanceRequest) async throws
    /// The instance's current state.
    func status(_ id: String) async throws -> RuntimeInstanceStatus
    /// Every instance this runtime knows on this node, running or not.
    func list() async throws -> [RuntimeInstanceStatus]
    /// Reads output from an offset.
    func logs(_ request: LogsRequest) async throws -> LogChunk
    /// Forgets a stopped instance and its files. Stops it first if it still runs.
    func remove(_ id: String) async throws
}

public struct RuntimeCapabilities: Sendable, Hashable {
    /// cpu and memory limits are enforced (cgroups), not just recorded.
    public var enforcesResourceLimits: Bool
    /// `image` is honoured (a rootfs or OCI layout).
    public var runsImages: Bool
    /// Instances have their own network namespace.
    public var isolatedNetwork: Bool
    public init(enforcesResourceLimits: Bool, runsImages: Bool, isolatedNetwork: Bool) {
        self.enforcesResourceLimits = enforcesResourceLimits
        self.runsImages = runsImages
        self.isolatedNetwork = isolatedNetwork
    }
}

public struct CreateInstanceRequest: Sendable, Hashable {
    /// Unique on the node; the instance's name.
    public var id: String
    public var command: [String]
    public var env: [String: String]
    public var workingDir: String?
    public var image: String?
    public var limits: ResourceVector
    public var mounts: [RuntimeMount]
    public var hostname: String?
    /// Kept with the instance and returned by ``RuntimePlugin/list()``: who owns it.
    public var labels: [String: String]
    /// The user, group, capabilities and privileges to run with (SDK 1.2); nil keeps the
    /// runtime's defaults. A runtime that cannot honour a field throws
    /// ``PluginError/Code/invalidArgument`` naming it, never runs with more than was asked.
    public var securityContext: SecurityContext?
    /// The network namespace to run in (SDK 1.4), e.g. `/run/netns/capstan-…`: made by the
    /// agent and wired by the network plugin before `create`. nil runs in the node's own
    /// network. A runtime that cannot join it throws ``PluginError/Code/invalidArgument``
    /// naming the field, never runs the instance on the host network instead.
    public var networkNamespace: String?
    /// A `resolv.conf` to show the instance at `/etc/resolv.conf` (SDK 1.4): cluster DNS. nil
    /// keeps the node's.
    public var resolvConf: String?

    public init(id: String, command: [String], env: [String: String] = [:], workingDir: String? = nil, image: String? = nil, limits: ResourceVector = ResourceVector(), mounts: [RuntimeMount] = [], hostname: String? = nil, labels: [String: String] = [:]) {
        self.id = id
        self.command = command
        self.env = env
        self.workingDir = workingDir
        self.image = image
        self.limits = limits
        self.mounts = mounts
        self.hostname = hostname
        self.labels = labels
    }
}

public struct RuntimeMount: Sendable, Hashable, Codable {
    public var hostPath: String
    public var containerPath: String
    public var readOnly: Bool
    public init(hostPath: String, containerPath: String, readOnly: Bool = false) {
        self.hostPath = hostPath
        self.containerPath = containerPath
        self.readOnly = readOnly
    }
}

public struct RuntimeInstanceStatus: Sendable, Hashable {
    public enum State: String, Sendable, Hashable, Codable {
        case created, running, exited, unknown
    }
    public var id: String
    public var state: State
    /// The command's own process id, once it has started.
    public var pid: Int32?
    /// Set once exited: the exit status, or 128 + signal when killed by one.
    public var exitCode: Int32?
    /// The signal that ended it, if any.
    public var signal: Int32?
    public var startedAt: Double?
    public var finishedAt: Double?
    public var labels: [String: String]
    /// Why it is in this state, when not obvious (`OOMKilled`, `re-adopted: exit code unknown`).
    public var reason: String?

    public init(id: String, state: State, pid: Int32? = nil, exitCode: Int32? = nil, signal: Int32? = nil, startedAt: Double? = nil, finishedAt: Double? = nil, labels: [String: String] = [:], reason: String? = nil) {
        self.id = id
        self.state = state
        self.pid = pid
        self.exitCode = exitCode
        self.signal = signal
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.labels = labels
        self.reason = reason
    }
}

public struct StopInstanceRequest: Sendable, Hashable {
    public var id: String
    /// Seconds between the polite signal and the forced kill.
    public var gracePeriod: Double
    public init(id: String, gracePeriod: Double = 10) {
        self.id = id
        self.gracePeriod = gracePeriod
    }
}

public struct KillInstanceRequest: Sendable, Hashable {
    public var id: String
    public var signal: Int32
    public init(id: String, signal: Int32) {
        self.id = id
        self.signal = signal
    }
}

public struct LogsRequest: Sendable, Hashable {
    public enum Stream: String, Sendable, Hashable { case stdout, stderr }
    public var id: String
    public var stream: Stream
    /// Byte offset to read from.
    public var offset: UInt64
    public var maxBytes: Int
    public init(id: String, stream: Stream = .stdout, offset: UInt64 = 0, maxBytes: Int = 1 << 20) {
        self.id = id
        self.stream = stream
        self.offset = offset
        self.maxBytes = maxBytes
    }
}

public struct LogChunk: Sendable, Hashable {
    public var data: [UInt8]
    /// Where the next read should start.
    public var nextOffset: UInt64
    public init(data: [UInt8], nextOffset: UInt64) {
        self.data = data
        self.nextOffset = nextOffset
    }
}

/// A runtime that can run a command inside a running instance: its namespaces, root and
/// environment (`runc exec`; for host processes, the instance's environment and working
/// directory). The agent uses it for `exec` probes. An optional ability (STYLE.md rule 3):
/// runtimes without it get a clear probe error naming the runtime.
public protocol RuntimeExec: RuntimePlugin {
    /// Runs `request.command` in the instance and waits for it, at most `request.timeout`
    /// seconds; a command still running then is killed and reported with exit code 137 and
    /// `timedOut`.
    /// - Throws: ``PluginError/Code/notFound`` for an unknown instance,
    ///   ``PluginError/Code/failedPrecondition`` when it is not running.
    func exec(_ request: ExecInstanceRequest) async throws -> ExecResult
}

public struct ExecInstanceRequest: Sendable, Hashable {
    public var id: String
    public var command: [String]
    /// Seconds before the command is killed.
    public var timeout: Double
    public init(id: String, command: [String], timeout: Double = 10) {
        self.id = id
        self.command = command
        self.timeout = timeout
    }
}

public struct ExecResult: Sendable, Hashable {
    public var exitCode: Int32
    /// stdout and stderr, interleaved, at most 64 KiB.
    public var output: [UInt8]
    public var timedOut: Bool
    public init(exitCode: Int32, output: [UInt8], timedOut: Bool = false) {
        self.exitCode = exitCode
        self.output = output
        self.timedOut = timedOut
    }
}

/// A runtime that says when an instance exits, so the agent waits for the exit instead of
/// asking ``RuntimePlugin/status(_:)`` on a timer (SDK 1.3; like Nomad's `WaitTask`). An
/// optional ability (STYLE.md rule 3): the agent polls runtimes without it every 250 ms, as
/// before.
public protocol RuntimeWait: RuntimePlugin {
    /// Returns the instance's status once its current run has ended — at once when it is not
    /// running (created, or already exited). Must not poll on a timer where the platform can
    /// notify (a pidfd, a shim's exit, a container engine's event stream).
    /// - Throws: ``PluginError/Code/notFound`` for an unknown instance; `CancellationError`
    ///   promptly when the calling task is cancelled (the instance keeps running).
    func wait(_ id: String) async throws -> RuntimeInstanceStatus
}

/// A runtime that can hold a log read open until there is output (SDK 1.3), so `capstan logs
/// -f` is woken by new output instead of asking again on a timer. Optional: the agent answers
/// at once for runtimes without it, and the CLI asks again.
public protocol RuntimeLogWait: RuntimePlugin {
    /// Like ``RuntimePlugin/logs(_:)``, but when there is nothing past `request.offset` yet,
    /// waits up to `seconds` for output to arrive (an empty chunk after that). Returns early,
    /// empty, when the calling task is cancelled.
    func waitForLogs(_ request: LogsRequest, seconds: Double) async throws -> LogChunk
}
