import CapstanCore

/// Decides whether a principal may do a verb on an object: the policy in one pure function, so the
/// whole matrix (role × verb × kind) is tested without a server.
///
/// - `admin` reads and writes every kind's spec, but not status (agents and controllers write
///   it) — ``SystemFields`` keeps what only the system may set.
/// - `viewer` reads.
/// - `node` (an agent) is confined to its own node, like Kubernetes' Node authorizer: it reads
///   its Node and the Instances bound to it (list and watch only with `nodeName=` itself), writes
///   its Node and those Instances' status, deletes them once stopped, writes Events, creates and
///   deletes Volumes on itself and writes their status (reclaim, expansion), and binds a claim to such a volume (only `spec.volumeName`, only
///   while unbound). It reads claims, volumes, storage classes, services and endpoints, and the secrets its
///   instances use (one by one); nothing else.
/// - Secrets: a viewer reads them with their values left out (``APIRoutes``).
enum Authorizer {
    enum Verb: String, Sendable, CaseIterable {
        case read, create, update, updateStatus, delete
    }

    /// Why not, or nil when allowed.
    /// - Parameters:
    ///   - name: the object's name; nil for a list or a watch.
    ///   - object: what the request sends (create, update, updateStatus).
    ///   - stored: the stored object (get, update, updateStatus, delete).
    ///   - nodeFilter: a list's or watch's `nodeName=` filter.
    /// - Parameter secretInUse: for a node reading a Secret, whether an instance bound to it
    ///   uses that secret (nodes read only those).
    static func denial(_ principal: Principal, _ verb: Verb, kind: String, name: String?, object: AnyResource? = nil, stored: AnyResource? = nil, nodeFilter: String? = nil, secretInUse: Bool = false) -> String? {
        switch principal.role {
        case .admin:
            if verb == .updateStatus { return "status is written by the agents and controllers, not by clients" }
            return nil
        case .viewer:
            return verb == .read ? nil : "a viewer token may only read"
        case .node:
            if kind == "Secret" {
                guard verb == .read, name != nil else { return "node \(principal.node ?? "?") may only read, one by one, the secrets its instances use" }
                return secretInUse ? nil : "no instance on node \(principal.node ?? "?") uses secret \"\(name ?? "")\""
            }
            return nodeDenial(principal.node ?? "", verb, kind: kind, name: name, object: object, stored: stored, nodeFilter: nodeFilter)
        case .join:
            return "a join token only joins nodes (POST /v1/join)"
        }
    }

    private static func nodeDenial(_ node: String, _ verb: Verb, kind: String, name: String?, object: AnyResource?, stored: AnyResource?, nodeFilter: String?) -> String? {
        let refusal = "node \(node) may not \(verb.rawValue) \(kind)\(name.map { " \"\($0)\"" } ?? "s")"
        func boundHere(_ candidate: AnyResource?) -> Bool {
            if case .instance(let instance)? = candidate { return instance.spec.nodeName == node }
            return false
        }
        func onThisNode(_ candidate: AnyResource?) -> Bool {
            if case .volume(let volume)? = candidate { return (volume.spec.nodeName ?? node) == node && volume.spec.controllerNode == node }
            return false
        }
        switch (kind, verb) {
        case ("Node", .read):
            // Every node's pod subnet and address: where to route other nodes' instances.
            return nil
        case ("Node", .create), ("Node", .update), ("Node", .updateStatus),
             ("Lease", .read), ("Lease", .create), ("Lease", .update):
            return name == node ? nil : refusal + ": a node token acts only as its own node (and its lease)"
        case ("Instance", .read):
            if name == nil { return nodeFilter == node ? nil : refusal + ": list and watch with nodeName=\(node)" }
            return boundHere(stored) ? nil : refusal + ": it is not bound to this node"
        case ("Instance", .updateStatus), ("Instance", .delete):
            return boundHere(stored) ? nil : refusal + ": it is not bound to this node"
        case ("Event", .read), ("Event", .create), ("Event", .update), ("Event", .delete):
            return nil
        case ("VolumeClaim", .read), ("Volume", .read), ("Service", .read), ("Endpoints", .read), ("StorageClass", .read), ("VolumeSnapshot", .read):
            return nil
        case ("Volume", .create):
            return onThisNode(object) ? nil : refusal + ": a node creates volumes only on itself (spec.nodeName: \(node))"
        case ("Volume", .delete), ("Volume", .updateStatus):
            return onThisNode(stored) ? nil : refusal + ": it is not on this node"
        case ("VolumeSnapshot", .updateStatus), ("VolumeSnapshot", .delete):
            if case .volumeSnapshot(let snapshot)? = stored, snapshot.status.nodeName == node { return nil }
            return refusal + ": the volume controller gave it to another node"
        case ("VolumeClaim", .update):
            return isBinding(object, of: stored) ? nil : refusal + ": a node may only bind an unbound claim (spec.volumeName)"
        default:
            return refusal
        }
    }

    /// True when `object` is `stored` with only `spec.volumeName` set, and `stored` was unbound
    /// or bound to that same volume.
    static func isBinding(_ object: AnyResource?, of stored: AnyResource?) -> Bool {
        guard case .volumeClaim(var claim)? = object, case .volumeClaim(let current)? = stored, claim.spec.volumeName != nil else { return false }
        guard current.spec.volumeName == nil || current.spec.volumeName == claim.spec.volumeName else { return false }
        claim.spec.volumeName = current.spec.volumeName
        claim.metadata.revision = current.metadata.revision
        return claim == current
    }
}
