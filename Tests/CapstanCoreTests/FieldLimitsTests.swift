import CapstanCore
import Foundation
import Testing

/// Every number a manifest holds has a documented range (FieldLimits); validation names the field
/// of each value outside it, and arithmetic on stored values cannot trap. Each case below crashed
/// or exhausted the server before the ranges were checked (issue 10's table).
@Suite struct FieldLimitsTests {
    func workload(_ edit: (inout WorkloadSpec) -> Void) -> Workload {
        var spec = WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["sleep", "60"]))
        edit(&spec)
        return Workload(name: "web", spec: spec)
    }

    func paths(_ workload: Workload) -> Set<String> { Set(workload.validate().map(\.path)) }

    /// SDK 1.3's new numbers: ports an agent reports, a lease's duration.
    @Test func reportedPortsAndLeaseDurationsHaveRanges() {
        var instance = Instance(name: "i", spec: InstanceSpec(template: InstanceTemplate(command: ["x"])))
        instance.status.ports = [PortBinding(containerPort: 8080, hostPort: 31_000), PortBinding(containerPort: 0, hostPort: 70_000)]
        #expect(Set(AnyResource.instance(instance).validate().map(\.path)) == ["status.ports[1].containerPort", "status.ports[1].hostPort"])
        for bad in [0, -1, .nan, .infinity, 1e19] {
            let lease = Lease(name: "n1", spec: LeaseSpec(leaseDurationSeconds: bad))
            #expect(AnyResource.lease(lease).validate().map(\.path) == ["spec.leaseDurationSeconds"], "\(bad)")
        }
        #expect(AnyResource.lease(Lease(name: "n1", spec: LeaseSpec(leaseDurationSeconds: 40))).validate().isEmpty)
    }

    @Test func hugeRestartBackoffIsRefusedByField() {
        let w = workload { $0.restartBackoff = RestartBackoff(initialSeconds: 1e19, maxSeconds: 1e19) }
        #expect(paths(w) == ["spec.restartBackoff.initialSeconds", "spec.restartBackoff.maxSeconds"])
    }

    @Test func hugeProbeDurationsAreRefusedByField() {
        let w = workload { $0.template.livenessProbe = Probe(tcpSocket: TCPSocketAction(port: 80), initialDelaySeconds: 1e17, periodSeconds: 1e17, timeoutSeconds: 1e17) }
        #expect(paths(w) == ["spec.template.livenessProbe.initialDelaySeconds", "spec.template.livenessProbe.periodSeconds", "spec.template.livenessProbe.timeoutSeconds"])
    }

    @Test func infiniteAndNaNDurationsAreRefused() throws {
        // YAML can say .inf and .nan where JSON cannot.
        let w = workload {
            $0.template.readinessProbe = Probe(tcpSocket: TCPSocketAction(port: 80), periodSeconds: .infinity, timeoutSeconds: .nan)
            $0.template.terminationGracePeriodSeconds = -.infinity
        }
        #expect(paths(w) == ["spec.template.readinessProbe.periodSeconds", "spec.template.readinessProbe.timeoutSeconds", "spec.template.terminationGracePeriodSeconds"])
    }

    @Test func hugeSurgeAndReplicasAreRefused() {
        let w = workload {
            $0.replicas = 1_000_000
            $0.strategy = RolloutStrategy(maxSurge: .max, maxUnavailable: 0)
        }
        #expect(paths(w) == ["spec.replicas", "spec.strategy.maxSurge"])
        #expect(workload { $0.replicas = FieldLimits.maxReplicas }.validate().isEmpty)
    }

    @Test func quantitiesHaveAMaximumPerResource() {
        let w = workload { $0.template.resources = ResourceRequirements(requests: ["cpu": "5e15", "memory": "2Pi", "gpu": "2000000", "gpu-milli": "1500"]) }
        #expect(paths(w) == ["spec.template.resources.requests.cpu", "spec.template.resources.requests.memory", "spec.template.resources.requests.gpu", "spec.template.resources.requests.gpu-milli"])
        #expect(workload { $0.template.resources = ResourceRequirements(requests: ["cpu": "1M", "memory": "1Pi", "gpu-milli": "1000"]) }.validate().isEmpty)
    }

    @Test func probeThresholdsHaveARange() {
        let w = workload { $0.template.livenessProbe = Probe(exec: ["true"], failureThreshold: 0, successThreshold: 10_001) }
        #expect(paths(w) == ["spec.template.livenessProbe.failureThreshold", "spec.template.livenessProbe.successThreshold"])
    }

    @Test func volumeClaimSizeHasAMaximum() throws {
        let claim = VolumeClaim(name: "data", spec: VolumeClaimSpec(size: try Quantity(parsing: "2Pi")))
        #expect(claim.validate().map(\.path) == ["spec.size"])
    }

    @Test func nodeStatusIsValidatedByTheStoreToo() {
        var node = Node(name: "n1", spec: NodeSpec())
        node.status.capacity = ["cpu": "5e15"]
        #expect(AnyResource.node(node).validate().map(\.path) == ["status.capacity.cpu"])
    }

    @Test func resourceSumsSaturateInsteadOfTrapping() {
        var sum = ResourceVector(cpuMilli: .max - 1, memoryBytes: .max, extended: ["gpu": .max])
        sum += ResourceVector(cpuMilli: 5_000_000_000_000_000_000, memoryBytes: 1, extended: ["gpu": 1])
        #expect(sum.cpuMilli == .max && sum.memoryBytes == .max && sum.extended["gpu"] == .max)
        var difference = ResourceVector(cpuMilli: .min + 1)
        difference -= ResourceVector(cpuMilli: 10)
        #expect(difference.cpuMilli == .min)
    }

    @Test func timestampsOutsideRFC3339AreClampedAndPrintable() {
        let far = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970 + 1e19)
        #expect(far.description == "9999-12-31T23:59:59Z")
        var set = Timestamp(secondsSinceEpoch: 0)
        set.secondsSinceEpoch = -1e300
        #expect(set.description == "0001-01-01T00:00:00Z")
        #expect(Timestamp(secondsSinceEpoch: .nan).description == "1970-01-01T00:00:00Z")
    }

    @Test func backoffDelayIsAlwaysASleepableNumber() {
        // Stored objects may predate the ranges: the delay must stay finite and in range.
        #expect(RestartBackoff(initialSeconds: 1e19, maxSeconds: 1e19).delay(forRestart: 5) == FieldLimits.maxSeconds)
        #expect(RestartBackoff(initialSeconds: .nan, maxSeconds: .nan).delay(forRestart: 1) == FieldLimits.maxSeconds)
        #expect(RestartBackoff(initialSeconds: 1, maxSeconds: 300).delay(forRestart: 3) == 8)
    }

    @Test func conditionsKeepTheirTransitionTimeWhileTheStatusHolds() {
        var conditions: [Condition] = []
        func condition(_ message: String, at time: Double) -> Condition {
            Condition(type: "Valid", status: false, reason: "InvalidSpec", message: message, lastTransitionTime: Timestamp(secondsSinceEpoch: time))
        }
        let added = conditions.set(condition("a", at: 10))
        let same = conditions.set(condition("a", at: 20))
        let changed = conditions.set(condition("b", at: 30))
        #expect(added && !same && changed)
        #expect(conditions.count == 1 && conditions[0].lastTransitionTime == Timestamp(secondsSinceEpoch: 10) && conditions[0].message == "b")
        let removed = conditions.remove(type: "Valid")
        #expect(removed && conditions.isEmpty)
    }

    @Test func securityContextsHaveRangesAndKnownCapabilities() {
        let w = workload { $0.template.securityContext = SecurityContext(runAsUser: -1, runAsGroup: 3_000_000_000, capabilities: CapabilityChanges(add: ["NET_ADMIN", "FLY"], drop: ["ALL", "cap_chown", "NOPE"])) }
        #expect(paths(w) == ["spec.template.securityContext.runAsUser", "spec.template.securityContext.runAsGroup",
                             "spec.template.securityContext.capabilities.add[1]", "spec.template.securityContext.capabilities.drop[2]"])
        #expect(CapabilityChanges(add: ["net_admin"], drop: ["KILL"]).applied(to: ["CAP_KILL", "CAP_CHOWN"]) == ["CAP_CHOWN", "CAP_NET_ADMIN"])
        #expect(CapabilityChanges(add: ["CAP_CHOWN"], drop: ["all"]).applied(to: ["CAP_KILL"]) == ["CAP_CHOWN"])
    }

    /// Found by the fuzzer (manifest-yaml, through a node's capacity): a long run of fraction
    /// digits made 10^digits overflow Int128 and trapped the validating server.
    @Test func longFractionsRoundUpInsteadOfTrapping() throws {
        let tiny = "0." + String(repeating: "0", count: 200) + "1"
        #expect(try Quantity(parsing: tiny).milliValue == 1)
        #expect(try Quantity(parsing: "0." + String(repeating: "0", count: 200)).milliValue == 0)
        #expect(try Quantity(parsing: "0." + String(repeating: "0", count: 60) + "1n").milliValue == 1)
        #expect(throws: QuantityParseError.self) { try Quantity(parsing: "1." + String(repeating: "0", count: 60) + "n") }
        var node = Node(name: "n", spec: NodeSpec())
        node.status.capacity = ["cpu": tiny]
        #expect(AnyResource.node(node).validate().isEmpty)
    }
}
