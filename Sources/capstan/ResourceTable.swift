import CapstanAPI
import CapstanCore
import Foundation
import PluginHost
import Yams

/// How `get` prints objects: a table (`-o wide` adds columns), JSON or YAML.
enum OutputFormat: String, CaseIterable, Sendable {
    case table, wide, json, yaml
}

enum ResourceTable {
    /// - Parameter showSecrets: print Secrets' values; by default they are left out.
    /// - Parameter asList: a list query: JSON is an array even of one object (a named `get`
    ///   prints the object itself).
    static func render(_ objects: [AnyResource], kind: ResourceKind, format: OutputFormat, headers: Bool = true, showSecrets: Bool = false, asList: Bool = false) throws -> String {
        let objects = showSecrets ? objects : objects.map(hidingSecretValues)
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            if objects.count == 1 && !asList { return String(decoding: try encoder.encode(objects[0]), as: UTF8.self) }
            return String(decoding: try encoder.encode(objects), as: UTF8.self)
        case .yaml:
            return try objects.map { try yaml($0) }.joined(separator: "---\n")
        case .table, .wide:
            let wide = format == .wide
            var rows = headers ? [columns(kind, wide: wide)] : []
            rows += objects.map { row($0, wide: wide) }
            guard !rows.isEmpty else { return "" }
            return PluginTable.table(rows)
        }
    }

    static func columns(_ kind: ResourceKind, wide: Bool) -> [String] {
        switch kind.kind {
        case "Instance": ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (wide ? ["NODE", "PID", "ADDRESSES", "PORTS"] : [])
        case "Workload": ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] + (wide ? ["TEMPLATE", "COMMAND"] : [])
        case "Node": ["NAME", "STATUS", "CPU", "MEMORY", "AGE"] + (wide ? ["AGENT", "LABELS"] : [])
        case "Event": ["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
        case "Secret": ["NAME", "KEYS", "AGE"]
        case "Service": ["NAME", "CLUSTER-IP", "PORTS", "ENDPOINTS", "AGE"] + (wide ? ["LB-PLUGIN", "ALGORITHM", "SELECTOR"] : [])
        case "Endpoints": ["NAME", "ENDPOINTS", "AGE"]
        case "VolumeClaim": ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"] + (wide ? ["REASON"] : [])
        case "Volume": ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "STATUS", "CLAIM", "STORAGECLASS", "AGE"] + (wide ? ["NODE", "PROVISIONER", "HANDLE"] : [])
        case "VolumeSnapshot": ["NAME", "READYTOUSE", "SOURCE", "RESTORESIZE", "AGE"] + (wide ? ["NODE", "HANDLE", "REASON"] : [])
        case "StorageClass": ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"] + (wide ? ["MAXSIZE", "PARAMETERS"] : [])
        default: ["NAME", "AGE"]
        }
    }

    static func row(_ object: AnyResource, wide: Bool) -> [String] {
        let age = self.age(object.metadata.creationTimestamp)
        switch object {
        case .instance(let instance):
            let status = instance.status
            let shown = instance.metadata.deletionTimestamp != nil ? "Terminating" : (status.reason.flatMap { $0 == "Adopted" ? nil : $0 } ?? status.phase.rawValue)
            // The host ports the node's network plugin gave (status), else those asked for.
            let ports = (status.ports.isEmpty
                ? instance.spec.template.ports.map { port in port.hostPort.map { "\($0):\(port.containerPort)" } ?? String(port.containerPort) }
                : status.ports.map { "\($0.hostPort):\($0.containerPort)" }).joined(separator: ",")
            return [instance.metadata.name, status.ready ? "1/1" : "0/1", shown, String(status.restarts), age]
                + (wide ? [instance.spec.nodeName ?? "<none>", status.pid.map(String.init) ?? "-", status.addresses.joined(separator: ",").nonEmpty ?? "-", ports.nonEmpty ?? "-"] : [])
        case .workload(let workload):
            let status = workload.status
            return [workload.metadata.name, "\(status.readyReplicas)/\(workload.spec.replicas)", String(status.updatedReplicas), String(status.readyReplicas), age]
                + (wide ? [status.templateHash ?? "-", workload.spec.template.command.joined(separator: " ")] : [])
        case .node(let node):
            // `ready` is kept by the server from the node's lease.
            let state = (node.status.ready ? "Ready" : "NotReady") + (node.spec.unschedulable ? ",SchedulingDisabled" : "")
            return [node.metadata.name, state, node.status.allocatable.texts["cpu"] ?? "-", node.status.allocatable.texts["memory"].flatMap(memory) ?? "-", age]
                + (wide ? [node.spec.agentAddress ?? "-", node.metadata.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")] : [])
        case .event(let event):
            return [self.age(event.spec.lastTimestamp), event.spec.type.rawValue, event.spec.reason, event.spec.involvedObject, String(event.spec.count), event.spec.message]
        case .secret(let secret):
            return [secret.metadata.name, secret.spec.data.keys.sorted().joined(separator: ",").nonEmpty ?? "-", age]
        case .service(let service):
            let ports: String = service.spec.ports.map { (port: ServicePort) -> String in
                let target: String = port.targetPortName ?? String(port.targetPort)
                let arrow: String = target == String(port.port) ? "" : "→" + target
                return String(port.port) + arrow + "/" + (port.protocol ?? "tcp")
            }.joined(separator: ",")
            let endpoints: String = service.status.conditions.contains { $0.type == "Endpoints" } ? String(service.status.readyEndpoints) : "-"
            let selector: String = service.spec.selector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            let base: [String] = [service.metadata.name, service.spec.clusterIP ?? "<pending>", ports, endpoints, age]
            let extra: [String] = [service.spec.loadBalancer ?? "(default)", service.spec.algorithm ?? "random", selector]
            return base + (wide ? extra : [])
        case .endpoints(let endpoints):
            let addresses = endpoints.spec.addresses.filter(\.ready).map { "\($0.address):\($0.port)" }
            let shown = addresses.prefix(4).joined(separator: ",") + (addresses.count > 4 ? " + \(addresses.count - 4) more" : "")
            return [endpoints.metadata.name, shown.nonEmpty ?? "<none>", age]
        case .volumeClaim(let claim):
            let bound = claim.status.conditions.first { $0.type == "Bound" }
            let phase = claim.status.phase?.rawValue ?? "Pending"
            let modes = accessModes(claim.status.accessModes ?? claim.spec.effectiveAccessModes)
            return [claim.metadata.name, phase, claim.spec.volumeName ?? "", claim.status.capacity.map { "\($0)" } ?? "", modes, claim.spec.storageClassName ?? "", age]
                + (wide ? [bound.map { $0.status ? "-" : "\($0.reason): \($0.message)" } ?? "-"] : [])
        case .volume(let volume):
            let phase = volume.metadata.deletionTimestamp != nil ? "Deleting" : (volume.status.phase?.rawValue ?? "-")
            return [volume.metadata.name, "\(volume.status.capacity ?? volume.spec.capacity)", accessModes(volume.spec.effectiveAccessModes), volume.spec.effectiveReclaimPolicy.rawValue,
                    phase, volume.spec.claim ?? "", volume.spec.storageClassName ?? "", age]
                + (wide ? [volume.spec.nodeName ?? "<any>", volume.spec.provisioner, volume.spec.volumeHandle] : [])
        case .volumeSnapshot(let snapshot):
            let status = snapshot.status
            let reason = status.conditions.first { !$0.status }.map { "\($0.reason): \($0.message)" } ?? "-"
            let shown = snapshot.metadata.deletionTimestamp != nil ? "Deleting" : (status.readyToUse ? "true" : "false")
            return [snapshot.metadata.name, shown, snapshot.spec.source, status.restoreSize.map { "\($0)" } ?? "", age]
                + (wide ? [status.nodeName ?? "-", status.snapshotHandle ?? "-", reason] : [])
        case .storageClass(let storageClass):
            let spec = storageClass.spec
            let name = storageClass.metadata.name + (spec.isDefault == true ? " (default)" : "")
            return [name, spec.provisioner, spec.effectiveReclaimPolicy.rawValue, spec.effectiveBindingMode.rawValue, spec.expansionAllowed ? "true" : "false", age]
                + (wide ? [spec.maxSize.map { "\($0)" } ?? "-", spec.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",").nonEmpty ?? "-"] : [])
        default:
            return [object.name, age]
        }
    }

    /// `RWO,ROX`, as kubectl abbreviates access modes.
    static func accessModes(_ modes: [VolumeAccessMode]) -> String {
        modes.map { mode in
            switch mode {
            case .readWriteOnce: "RWO"
            case .readOnlyMany: "ROX"
            case .readWriteMany: "RWX"
            case .readWriteOncePod: "RWOP"
            @unknown default: mode.rawValue
            }
        }.joined(separator: ",")
    }

    /// A Secret with its values left out (its keys stay), and a note on how to see them.
    static func hidingSecretValues(_ object: AnyResource) -> AnyResource {
        guard case .secret(var secret) = object else { return object }
        secret.spec.data = secret.spec.data.mapValues { _ in [] }
        secret.metadata.annotations["capstan.dev/redacted"] = "values hidden; add --show-secrets to print them"
        return .secret(secret)
    }

    static func memory(_ text: String) -> String? {
        guard let bytes = Int64(text) else { return text }
        return bytes >= 1 << 30 ? "\(bytes >> 30)Gi" : "\(bytes >> 20)Mi"
    }

    /// `5s`, `3m`, `2h`, `4d`, like kubectl.
    static func age(_ timestamp: Timestamp?) -> String {
        guard let timestamp else { return "-" }
        let seconds = max(0, Int(Date().timeIntervalSince1970 - timestamp.secondsSinceEpoch))
        if seconds < 120 { return "\(seconds)s" }
        if seconds < 7200 { return "\(seconds / 60)m" }
        if seconds < 172_800 { return "\(seconds / 3600)h" }
        return "\(seconds / 86_400)d"
    }
}

extension ResourceTable {
    /// YAML of an object with keys sorted and whole numbers printed as integers
    /// (`terminationGracePeriodSeconds: 2`, not `2.0`): through JSON, whose numbers have no type.
    static func yaml(_ object: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let value = try JSONDecoder().decode(JSONValue.self, from: try encoder.encode(object))
        return try Yams.serialize(node: node(value))
    }

    static func node(_ value: JSONValue) -> Yams.Node {
        switch value {
        case .null: return Yams.Node("null", Tag(.null))
        case .bool(let flag): return Yams.Node(flag ? "true" : "false", Tag(.bool))
        case .int(let number): return Yams.Node(String(number), Tag(.int))
        case .double(let number):
            if number.rounded() == number, abs(number) < 9.0e15 { return Yams.Node(String(Int64(number)), Tag(.int)) }
            return Yams.Node(String(number), Tag(.float))
        case .string(let text): return Yams.Node(text, Tag(.str), .any)
        case .array(let items): return .sequence(Yams.Node.Sequence(items.map(node)))
        case .object(let fields):
            return .mapping(Yams.Node.Mapping(fields.keys.sorted().map { (Yams.Node($0), node(fields[$0]!)) }))
        }
    }
}

