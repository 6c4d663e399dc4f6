import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation

/// Runs one instance on this node through its runtime plugin, like the kubelet's pod worker:
/// starts (or re-adopts) it, watches for its exit, runs its probes, restarts it by its restart
/// policy with exponential backoff, and reports phase, readiness, pid, exit code, restart count
/// and reasons to the API (and Events for `describe`).
actor InstanceSupervisor {
    let name: String
    let uid: String?
    let runtime: any RuntimePlugin
    let runtimeName: String
    private(set) var instance: Instance
    private let api: APIClient
    private let events: EventRecorder
    private let network: (any NetworkPlugin)?
    private let volumes: VolumeAttacher?
    /// Where instances get their own network namespace, when the network plugin isolates them.
    private let namespaces: NetworkNamespaces?
    /// The cluster DNS resolv.conf for instances in their own namespace.
    private let resolvConf: String?
    /// The cluster's services, for `<NAME>_SERVICE_HOST` variables.
    private let services: NetworkSync?
    private var published: [VolumeAttacher.Published] = []
    private var prober: Prober
    private var task: Task<Void, Never>?
    private var addresses: [String] = []
    /// The host ports the network plugin gave the instance's ports.
    private var ports: [PortBinding] = []
    /// The last create failed: the runtime may not hold the instance, so a restart creates.
    private var needsCreate = false
    /// Status the server has not heard yet (it was unreachable when it changed).
    private var unreported: InstanceStatus?
    /// How often a running instance's state is read when its runtime cannot say when it exits
    /// (no ``RuntimeWait``).
    static let pollInterval = Duration.milliseconds(250)

    init(instance: Instance, runtime: any RuntimePlugin, runtimeName: String, network: (any NetworkPlugin)?, volumes: VolumeAttacher?, api: APIClient, events: EventRecorder, probeHost: String,
         namespaces: NetworkNamespaces? = nil, resolvConf: String? = nil, services: NetworkSync? = nil) {
        self.services = services
        self.volumes = volumes
        self.namespaces = network?.capabilities.isolatedNamespaces == true ? namespaces : nil
        self.resolvConf = resolvConf
        self.name = instance.metadata.name
        self.uid = instance.metadata.uid
        self.instance = instance
        self.runtime = runtime
        self.runtimeName = runtimeName
        self.network = network
        self.api = api
        self.events = events
        self.prober = Prober(host: probeHost)
    }

    /// Keeps the newest copy seen (the watch and our own writes both bring them). When the
    /// control plane marked the instance `Unknown` because this node fell silent, the agent —
    /// which knows — reports its status again.
    func observe(_ newer: Instance) async {
        guard (newer.metadata.revision ?? 0) >= (instance.metadata.revision ?? 0) else { return }
        let known = instance.status
        instance = newer
        if let unreported {
            // What happened while the server was away (restarts, exits) wins over its copy.
            await report { status in status = unreported }
        } else if newer.status.reason == "NodeLost", known.reason != "NodeLost", known.phase != .unknown {
            await report { status in status = known }
        }
    }

    /// Starts supervising: adopts what the runtime already runs, or creates and starts it.
    /// - Parameter barrier: a stop of an earlier instance of this name to wait out first.
    func launch(adopting existing: RuntimeInstanceStatus?, after barrier: StopBarrier? = nil) {
        guard task == nil else { return }
        task = Task {
            await barrier?.waitUntilStopped(self.name)
            await self.supervise(adopting: existing)
        }
    }

    /// Stops supervising, stops the instance (SIGTERM, then SIGKILL after its grace period),
    /// removes it from the runtime and detaches its network.
    func shutdown() async {
        task?.cancel()
        await task?.value
        _ = try? await runtime.stop(StopInstanceRequest(id: name, gracePeriod: Self.gracePeriod(of: instance.spec.template)))
        try? await runtime.remove(name)
        if let network {
            do {
                try await network.detach(NetworkDetachRequest(instanceID: name, namespacePath: namespaces?.path(for: name)))
            } catch {
                await events.record("Instance/\(name)", reason: "NetworkDetachFailed", message: "the network plugin could not detach it: \(error)", type: .warning)
            }
        }
        namespaces?.remove(for: name)
        if !instance.spec.template.secrets.isEmpty { SecretFiles(api: api).remove(for: name) }
        await volumes?.unpublish(published, for: name)
        published = []
    }

    // MARK: The loop

    private func supervise(adopting existing: RuntimeInstanceStatus?) async {
        var current: RuntimeInstanceStatus
        var exitReason: (reason: String, message: String)?
        if existing != nil, let network, let attachment = try? await network.attach(NetworkAttachRequest(instanceID: name, namespacePath: namespaces?.path(for: name), ports: instance.spec.template.ports)) {
            // Attach is idempotent: it gives back the adopted instance's ports and addresses.
            learn(attachment)
        }
        if existing != nil, let volumes, !instance.spec.template.volumeMounts.isEmpty {
            // Publishing is idempotent: this relearns what to unpublish at the end, and counts
            // the adopted instance as a user of its volumes (so none is reclaimed under it).
            do {
                published = try await volumes.publish(instance.spec.template, for: name).published
            } catch {
                await events.record("Instance/\(name)", reason: "VolumeAdoptFailed", message: "its volumes could not be published again after the agent restarted: \(error)", type: .warning)
            }
        }
        if let existing, existing.state == .running {
            current = existing
            let probed = instance.spec.template.readinessProbe != nil
            let ports = self.ports
            let addresses = self.addresses
            await report { status in
                status.phase = .running
                status.pid = existing.pid
                status.ready = !probed
                status.nextRestartAt = nil
                if !ports.isEmpty { status.ports = ports }
                if !addresses.isEmpty { status.addresses = addresses }
            }
            await events.record("Instance/\(name)", reason: "Adopted", message: "re-adopted running instance (pid \(existing.pid.map(String.init) ?? "?")) after an agent restart")
        } else if let existing, existing.state == .exited {
            current = existing
        } else {
            switch await startFresh() {
            case .success(let started): current = started
            case .failure(let failure):
                current = RuntimeInstanceStatus(id: name, state: .exited, labels: [:], reason: failure.description)
                exitReason = ("StartFailed", failure.description)
            }
        }
        var consecutive = 0
        while !Task.isCancelled {
            if current.state == .running {
                let (ended, reason) = await watchRunning(current)
                guard let ended else { return }
                current = ended
                exitReason = reason
            }
            guard !Task.isCancelled else { return }
            let code = current.exitCode
            let description = exitReason?.message ?? Self.describe(current)
            let policy = instance.spec.restartPolicy
            let restart = policy == .always || (policy == .onFailure && (code ?? 1) != 0)
            if !restart {
                let succeeded = code == 0
                let finalReason = exitReason?.reason ?? (succeeded ? "Completed" : "Error")
                await report { status in
                    status.phase = succeeded ? .succeeded : .failed
                    status.ready = false
                    status.exitCode = code
                    status.pid = nil
                    status.reason = finalReason
                    status.message = description
                    status.nextRestartAt = nil
                }
                await events.record("Instance/\(name)", reason: succeeded ? "Completed" : "Failed", message: description, type: succeeded ? .normal : .warning)
                return
            }
            let backoff = instance.spec.restartBackoff
            let ranFor = (current.finishedAt ?? Date().timeIntervalSince1970) - (current.startedAt ?? Date().timeIntervalSince1970)
            if ranFor >= backoff.resetAfterSeconds { consecutive = 0 }
            let delay = backoff.delay(forRestart: consecutive)
            consecutive += 1
            let waitReason = consecutive > 1 ? "CrashLoopBackOff" : (exitReason?.reason ?? "BackOff")
            let message = "\(description); restarting in \(Self.seconds(delay))"
            await report { status in
                status.phase = .running
                status.ready = false
                status.restarts += 1
                status.exitCode = code
                status.pid = nil
                status.reason = waitReason
                status.message = message
                status.nextRestartAt = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970 + delay)
            }
            await events.record("Instance/\(name)", reason: "BackOff", message: "back-off restarting: \(message)", type: .warning)
            do {
                try await Task.sleep(for: .clampedSeconds(delay))
            } catch {
                return
            }
            exitReason = nil
            // Restart what the runtime holds; redo everything (network, volumes, create) when
            // an earlier create failed or the runtime lost it, so a cause that went away (a
            // port freed, an image folder made) is recovered from and the plugin's own error —
            // not "does not exist" — is what status and events show while it lasts.
            var restarted: Result<RuntimeInstanceStatus, PluginError>
            if needsCreate {
                restarted = await startFresh(restarted: true)
            } else {
                do {
                    let status = try await runtime.start(name)
                    await reportStarted(status, restarted: true)
                    restarted = .success(status)
                } catch let error as PluginError where error.code == .notFound {
                    restarted = await startFresh(restarted: true)
                } catch {
                    restarted = .failure(error as? PluginError ?? PluginError(.internal, "\(error)"))
                }
            }
            switch restarted {
            case .success(let status): current = status
            case .failure(let failure):
                current = RuntimeInstanceStatus(id: name, state: .exited, labels: [:], reason: failure.description)
                exitReason = ("StartFailed", "start failed: \(failure.description)")
            }
        }
    }

    /// `BACKEND_SERVICE_HOST=10.96.0.3`, `BACKEND_SERVICE_PORT=8080`, and
    /// `BACKEND_SERVICE_PORT_<PORT NAME>` for named ports.
    static func serviceVariables(_ table: [(name: String, clusterIP: String, ports: [ServicePort])]) -> [String: String] {
        var variables: [String: String] = [:]
        for service in table {
            let prefix = service.name.uppercased().replacingOccurrences(of: "-", with: "_") + "_SERVICE_"
            variables[prefix + "HOST"] = service.clusterIP
            if let first = service.ports.first { variables[prefix + "PORT"] = String(first.port) }
            for port in service.ports {
                if let name = port.name { variables[prefix + "PORT_" + name.uppercased().replacingOccurrences(of: "-", with: "_")] = String(port.port) }
            }
        }
        return variables
    }

    /// Keeps what the network plugin gave: addresses and host ports (for status and probes).
    private func learn(_ attachment: NetworkAttachment) {
        addresses = attachment.addresses
        ports = attachment.ports.map { PortBinding(containerPort: $0.containerPort, hostPort: $0.hostPort, protocol: $0.protocol) }
        if namespaces != nil, let own = attachment.addresses.first {
            // Its own address: probes reach it there, on its container ports.
            prober.host = own
        } else {
            for mapping in attachment.ports { prober.ports[mapping.containerPort] = mapping.hostPort }
        }
    }

    /// Creates and starts the instance; reports it Running. On failure the next restart
    /// creates again (``needsCreate``).
    private func startFresh(restarted: Bool = false) async -> Result<RuntimeInstanceStatus, PluginError> {
        let outcome = await createAndStart(restarted: restarted)
        if case .failure = outcome { needsCreate = true } else { needsCreate = false }
        return outcome
    }

    private func createAndStart(restarted: Bool) async -> Result<RuntimeInstanceStatus, PluginError> {
        let template = instance.spec.template
        do {
            var environment = template.env
            // The instance's own name, like Kubernetes' downward API POD_NAME.
            if environment["CAPSTAN_INSTANCE"] == nil { environment["CAPSTAN_INSTANCE"] = name }
            var namespace: String?
            if let network {
                namespace = try await namespaces?.create(for: name)
                let attachment = try await network.attach(NetworkAttachRequest(instanceID: name, namespacePath: namespace, ports: template.ports))
                learn(attachment)
                environment.merge(attachment.environment) { own, _ in own }
            }
            var mounts: [RuntimeMount] = []
            if let volumes, !template.volumeMounts.isEmpty {
                let attached = try await volumes.publish(template, for: name)
                mounts = attached.mounts
                published = attached.published
                if !runtime.capabilities.runsImages {
                    // Host processes see no mounts: they get each volume's path instead.
                    for (mount, attachedMount) in zip(template.volumeMounts, attached.mounts) {
                        environment[Self.volumeVariable(mount.claim)] = attachedMount.hostPath
                    }
                }
            }
            if let services {
                // Kubernetes' service variables, for every service that has a virtual IP when
                // the instance starts; the template's own variables win.
                environment.merge(Self.serviceVariables(await services.serviceTable())) { own, _ in own }
            }
            if !instance.spec.gpuDevices.isEmpty {
                // The devices the scheduler assigned, in the variables GPU tooling reads.
                let devices = instance.spec.gpuDevices.map(String.init).joined(separator: ",")
                environment["CAPSTAN_GPUS"] = devices
                environment["NVIDIA_VISIBLE_DEVICES"] = devices
            }
            if !template.secrets.isEmpty {
                let secrets = try await SecretFiles(api: api).materialize(template.secrets, for: name, context: template.securityContext, inContainer: runtime.capabilities.runsImages)
                mounts += secrets.mounts
                environment.merge(secrets.environment) { _, secret in secret }
            }
            var labels = [WellKnown.instanceLabel: name]
            if let uid { labels[WellKnown.uidLabel] = uid }
            var request = CreateInstanceRequest(id: name, command: template.command, env: environment, workingDir: template.workingDir, image: template.image,
                                                limits: template.resources.limits.vector, mounts: mounts, hostname: name, labels: labels)
            request.securityContext = template.securityContext
            request.networkNamespace = namespace
            if namespace != nil { request.resolvConf = resolvConf }
            do {
                _ = try await runtime.create(request)
            } catch let error as PluginError where error.code == .alreadyExists {
                // A leftover of an earlier instance of the same name (scale down, then up) goes
                // first; one of this instance (same uid) with another request is an error.
                guard let stale = try? await runtime.status(name), stale.labels[WellKnown.uidLabel] != uid else { throw error }
                _ = try? await runtime.stop(StopInstanceRequest(id: name, gracePeriod: 1))
                try? await runtime.remove(name)
                _ = try await runtime.create(request)
            }
            let started = try await runtime.start(name)
            await reportStarted(started, restarted: restarted)
            return .success(started)
        } catch let error as PluginError {
            return .failure(error)
        } catch {
            return .failure(PluginError(.internal, "\(error)"))
        }
    }

    /// Reports Running at once, with the pid `start` returned (a runtime without
    /// ``RuntimeWait`` may learn it later; the poll then reports it).
    private func reportStarted(_ started: RuntimeInstanceStatus, restarted: Bool) async {
        let ready = instance.spec.template.readinessProbe == nil
        let addresses = self.addresses
        let ports = self.ports
        let hostNetwork = network != nil && namespaces == nil
        await report { status in
            status.hostNetwork = hostNetwork
            status.phase = .running
            status.pid = started.pid
            status.startedAt = Timestamp(secondsSinceEpoch: started.startedAt ?? Date().timeIntervalSince1970)
            status.ready = ready
            status.reason = nil
            status.message = nil
            status.nextRestartAt = nil
            if !addresses.isEmpty { status.addresses = addresses }
            if !ports.isEmpty { status.ports = ports }
        }
        // Best effort and after the status: at background priority, so 100 instances starting
        // together report Running before their 100 Started events take the CPU.
        let (events, name, runtimeName) = (self.events, self.name, self.runtimeName)
        Task(priority: .background) {
            await events.record("Instance/\(name)", reason: "Started", message: "\(restarted ? "restarted" : "started") with the \(runtimeName) runtime")
        }
    }

    /// How a run being watched ended.
    private enum RunOutcome: Sendable {
        case exited(RuntimeInstanceStatus)
        case livenessFailed(RuntimeInstanceStatus, message: String)
        case cancelled
    }

    /// Waits for the instance to exit while its probes run on their own schedules; nil when
    /// cancelled. A liveness failure stops it (grace period) and is returned as the exit's
    /// reason. The exit is waited for (``RuntimeWait``), not polled, when the runtime can.
    private func watchRunning(_ running: RuntimeInstanceStatus) async -> (RuntimeInstanceStatus?, (reason: String, message: String)?) {
        let template = instance.spec.template
        let outcome = await withTaskGroup(of: RunOutcome.self) { group in
            group.addTask { await self.waitForExit(running) }
            if template.livenessProbe != nil || template.readinessProbe != nil {
                group.addTask { await self.runProbes(template) }
            }
            let first = await group.next() ?? .cancelled
            group.cancelAll()
            return first
        }
        switch outcome {
        case .exited(let status): return (status, nil)
        case .livenessFailed(let status, let message): return (status, ("LivenessProbeFailed", message))
        case .cancelled: return (nil, nil)
        }
    }

    /// The run's end: from ``RuntimeWait`` when the runtime offers it, else by asking `status`
    /// every ``pollInterval`` (runtimes built against SDK 1.2 or older).
    private func waitForExit(_ running: RuntimeInstanceStatus) async -> RunOutcome {
        var pid = running.pid
        while !Task.isCancelled {
            if let waiter = runtime as? any RuntimeWait {
                do {
                    let status = try await waiter.wait(name)
                    if status.state != .running { return .exited(status) }
                    // Still running: a plugin that answered early; ask again after a pause.
                } catch is CancellationError {
                    return .cancelled
                } catch let error as PluginError where error.code == .notFound {
                    return lost(error)
                } catch {
                    // A plugin error: say so, and ask again after a pause rather than spin.
                    await events.record("Instance/\(name)", reason: "RuntimeError", message: "waiting for the instance's exit failed: \(error)", type: .warning)
                }
            }
            try? await Task.sleep(for: Self.pollInterval)
            guard !Task.isCancelled else { break }
            if runtime is any RuntimeWait { continue }
            let status: RuntimeInstanceStatus
            do {
                status = try await runtime.status(name)
            } catch let error as PluginError where error.code == .notFound {
                return lost(error)
            } catch {
                continue
            }
            if status.state != .running { return .exited(status) }
            if status.pid != pid, let newPID = status.pid {
                pid = newPID
                await report { $0.pid = newPID }
            }
        }
        return .cancelled
    }

    /// The runtime no longer knows the instance: an exit, and the restart creates it again.
    private func lost(_ error: PluginError) -> RunOutcome {
        needsCreate = true
        return .exited(RuntimeInstanceStatus(id: name, state: .exited, labels: [:], reason: "the \(runtimeName) runtime lost the instance: \(error.message)"))
    }

    /// Runs the liveness and readiness probes, each when it is due, until liveness fails
    /// (returned) or the task is cancelled.
    private func runProbes(_ template: InstanceTemplate) async -> RunOutcome {
        let clock = ContinuousClock()
        let start = clock.now
        var liveness = ProbeState(probe: template.livenessProbe, start: start)
        var readiness = ProbeState(probe: template.readinessProbe, start: start)
        var ready = template.readinessProbe == nil
        while !Task.isCancelled {
            let due = [liveness.probe != nil ? liveness.next : nil, readiness.probe != nil ? readiness.next : nil].compactMap { $0 }.min() ?? start
            do { try await Task.sleep(until: due, clock: clock) } catch { return .cancelled }
            if let probe = liveness.dueProbe(at: clock.now) {
                let outcome = await prober.check(probe, instanceID: name, runtime: runtime, runtimeName: runtimeName)
                guard !Task.isCancelled else { return .cancelled }
                if liveness.record(outcome, at: clock.now) == .failed, case .failure(let why) = outcome {
                    let message = "liveness probe failed \(probe.failureThreshold) time(s): \(why)"
                    await events.record("Instance/\(name)", reason: "Unhealthy", message: message + "; restarting", type: .warning)
                    let stopped = try? await runtime.stop(StopInstanceRequest(id: name, gracePeriod: Self.gracePeriod(of: template)))
                    return .livenessFailed(stopped ?? RuntimeInstanceStatus(id: name, state: .exited, labels: [:]), message: message)
                }
            }
            if let probe = readiness.dueProbe(at: clock.now) {
                let outcome = await prober.check(probe, instanceID: name, runtime: runtime, runtimeName: runtimeName)
                guard !Task.isCancelled else { return .cancelled }
                let verdict = readiness.record(outcome, at: clock.now)
                let nowReady = verdict == .passed ? true : (verdict == .failed ? false : ready)
                if nowReady != ready {
                    ready = nowReady
                    await report { $0.ready = nowReady }
                    if !nowReady, case .failure(let why) = outcome {
                        await events.record("Instance/\(name)", reason: "NotReady", message: "readiness probe failed: \(why)", type: .warning)
                    }
                }
            }
        }
        return .cancelled
    }

    // MARK: Reporting

    /// Applies `change` to the instance's status and writes it (compare-and-swap, re-read on
    /// conflict). Gives up quietly when the instance is gone: the agent's watch handles that.
    ///
    /// The agent decides locally (restarts, probes, backoff) whether or not the server answers:
    /// when it cannot be reached, the change is kept here (``unreported``) — restart counts keep
    /// counting — and reported once the server is back (the next report, or the watch bringing
    /// the instance again).
    private func report(_ change: @Sendable (inout InstanceStatus) -> Void) async {
        var attempt = instance
        for _ in 0..<5 {
            var updated = attempt
            change(&updated.status)
            if updated.status == attempt.status && unreported == nil { return }
            do {
                guard case .instance(let stored) = try await api.updateStatus(.instance(updated)) else { return }
                unreported = nil
                await observe(stored)
                return
            } catch where error.status == 409 {
                guard case .instance(let fresh)? = try? await api.get(.instance, name) else { return }
                await observe(fresh)
                attempt = fresh
                if let unreported { attempt.status = unreported }
            } catch where error.status == 0 {
                // Unreachable: keep it; the server hears it when it is back.
                instance.status = updated.status
                unreported = updated.status
                return
            } catch {
                return
            }
        }
    }

    /// `CAPSTAN_VOLUME_<CLAIM>` (upper case, `-` as `_`): where a host process finds a volume.
    static func volumeVariable(_ claim: String) -> String {
        "CAPSTAN_VOLUME_" + claim.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    static func describe(_ status: RuntimeInstanceStatus) -> String {
        guard let code = status.exitCode else { return status.reason ?? "exited (exit code unknown)" }
        if let signal = status.signal { return "killed by signal \(signal) (exit code \(code))" + (status.reason.map { ", \($0)" } ?? "") }
        return "exited with code \(code)"
    }

    /// The template's grace period (30 s when unset), held to the documented range even for
    /// objects stored before it was checked.
    static func gracePeriod(of template: InstanceTemplate) -> Double {
        guard let grace = template.terminationGracePeriodSeconds, !grace.isNaN else { return 30 }
        return min(max(grace, 0), FieldLimits.maxSeconds)
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(saturating: value))s" : String(format: "%.1fs", value)
    }
}

/// A probe's schedule and its run of successes or failures.
struct ProbeState {
    enum Verdict { case passed, failed, undecided }
    let probe: Probe?
    var next: ContinuousClock.Instant
    var failures = 0
    var successes = 0

    init(probe: Probe?, start: ContinuousClock.Instant) {
        self.probe = probe
        self.next = start + .clampedSeconds(probe?.initialDelaySeconds ?? 0)
    }

    func dueProbe(at now: ContinuousClock.Instant) -> Probe? {
        guard let probe, now >= next else { return nil }
        return probe
    }

    mutating func record(_ outcome: Prober.Outcome, at now: ContinuousClock.Instant) -> Verdict {
        guard let probe else { return .undecided }
        next = now + .clampedSeconds(probe.periodSeconds)
        switch outcome {
        case .success:
            failures = 0
            successes += 1
            return successes >= probe.successThreshold ? .passed : .undecided
        case .failure:
            successes = 0
            failures += 1
            return failures >= probe.failureThreshold ? .failed : .undecided
        }
    }
}
