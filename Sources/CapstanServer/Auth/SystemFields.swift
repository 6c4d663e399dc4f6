import CapstanCore

/// What only the system may set, kept out of clients' writes: status (agents and controllers),
/// an instance's node (the scheduler binds), an object's owner (controllers), a node's agent
/// address (its authenticated agent), a claim's bound volume once bound. An update keeps the
/// stored values of these fields; a create may not set them. A node's own writes (its Node) are
/// the agent's and keep what it sends.
enum SystemFields {
    /// The object to store for a client's create or update.
    /// - Throws: ``APIFailure`` 403 naming the field a client tried to set.
    static func clientWrite(_ object: AnyResource, stored: AnyResource?, by principal: Principal) throws -> AnyResource {
        if principal.role == .node {
            // A node's agent writes its Node, but not the subnet the cluster gave it: moving it
            // would take another node's traffic.
            if case .node(var node) = object {
                if case .node(let current)? = stored { node.spec.podCIDR = current.spec.podCIDR } else { node.spec.podCIDR = nil }
                return .node(node)
            }
            return object
        }
        var result = object
        func forbid(_ field: String, _ why: String) -> APIFailure {
            APIFailure(.forbidden, "Forbidden", "\(object.kind) \"\(object.name)\": \(field) \(why); leave it out of what you send")
        }
        /// The object with the status a new object of its kind starts with.
        func fresh<Spec>(_ resource: Resource<Spec>) -> Resource<Spec> {
            var resource = resource
            resource.status = Spec.initialStatus
            return resource
        }
        guard let stored else {
            if object.metadata.owner != nil { throw forbid("metadata.owner", "is set by the controller that owns an object") }
            switch object {
            case .instance(let instance):
                if instance.spec.nodeName != nil { throw forbid("spec.nodeName", "is set by the scheduler when it binds the instance") }
                if !instance.spec.gpuDevices.isEmpty { throw forbid("spec.gpuDevices", "is set by the scheduler when it binds the instance") }
                result = .instance(fresh(instance))
            case .node(let node):
                if node.spec.agentAddress != nil { throw forbid("spec.agentAddress", "is set by the node's own agent") }
                if node.spec.podCIDR != nil { throw forbid("spec.podCIDR", "is given by the control plane from the cluster CIDR") }
                result = .node(fresh(node))
            case .workload(let workload): result = .workload(fresh(workload))
            case .service(let service): result = .service(fresh(service))
            case .volumeClaim(let claim): result = .volumeClaim(fresh(claim))
            // An operator's static volume: the controller sets its phase.
            case .volume(let volume): result = .volume(fresh(volume))
            case .volumeSnapshot(let snapshot): result = .volumeSnapshot(fresh(snapshot))
            default:
                break
            }
            return result
        }
        result.metadata.owner = stored.metadata.owner
        switch (object, stored) {
        case (.instance(var instance), .instance(let current)):
            if let node = instance.spec.nodeName, node != current.spec.nodeName {
                throw forbid("spec.nodeName", "is set by the scheduler when it binds the instance")
            }
            instance.spec.nodeName = current.spec.nodeName
            instance.spec.gpuDevices = current.spec.gpuDevices
            instance.status = current.status
            instance.metadata.owner = current.metadata.owner
            result = .instance(instance)
        case (.node(var node), .node(let current)):
            if let address = node.spec.agentAddress, address != current.spec.agentAddress {
                throw forbid("spec.agentAddress", "is set by the node's own agent")
            }
            node.spec.agentAddress = current.spec.agentAddress
            if let cidr = node.spec.podCIDR, cidr != current.spec.podCIDR {
                throw forbid("spec.podCIDR", "is given by the control plane from the cluster CIDR")
            }
            node.spec.podCIDR = current.spec.podCIDR
            node.status = current.status
            result = .node(node)
        case (.workload(var workload), .workload(let current)):
            workload.status = current.status
            workload.metadata.owner = current.metadata.owner
            result = .workload(workload)
        case (.service(var service), .service(let current)):
            // Endpoints and conditions are the controllers'.
            service.status = current.status
            result = .service(service)
        case (.volumeClaim(var claim), .volumeClaim(let current)):
            // A manifest applied again has no volumeName: the claim stays bound (issue 9).
            if let volume = claim.spec.volumeName, let bound = current.spec.volumeName, volume != bound {
                throw forbid("spec.volumeName", "is bound to volume \"\(bound)\"; a bound claim cannot move")
            }
            claim.spec.volumeName = claim.spec.volumeName ?? current.spec.volumeName
            claim.metadata.owner = current.metadata.owner
            claim.status = current.status
            result = .volumeClaim(claim)
        case (.volume(var volume), .volume(let current)):
            volume.status = current.status
            result = .volume(volume)
        case (.volumeSnapshot(var snapshot), .volumeSnapshot(let current)):
            // What it copies is fixed once taken.
            if snapshot.spec != current.spec && current.status.snapshotHandle != nil {
                throw forbid("spec.source", "cannot change once the snapshot is taken; create another snapshot")
            }
            snapshot.status = current.status
            result = .volumeSnapshot(snapshot)
        default:
            break
        }
        return result
    }

    /// The object to store for a status write: the stored object with the sent status.
    static func statusWrite(_ object: AnyResource, stored: AnyResource) throws -> AnyResource {
        var result = stored
        result.metadata.revision = object.metadata.revision
        /// The stored object with the sent status, compare-and-swap on the sent revision.
        func withStatus<Spec>(_ sent: Resource<Spec>, _ current: Resource<Spec>) -> Resource<Spec> {
            var current = current
            current.status = sent.status
            current.metadata.revision = sent.metadata.revision
            return current
        }
        switch (object, stored) {
        case (.instance(let sent), .instance(let current)): result = .instance(withStatus(sent, current))
        case (.node(let sent), .node(let current)): result = .node(withStatus(sent, current))
        case (.workload(let sent), .workload(let current)): result = .workload(withStatus(sent, current))
        case (.service(let sent), .service(let current)): result = .service(withStatus(sent, current))
        case (.volume(let sent), .volume(let current)): result = .volume(withStatus(sent, current))
        case (.volumeClaim(let sent), .volumeClaim(let current)): result = .volumeClaim(withStatus(sent, current))
        case (.volumeSnapshot(let sent), .volumeSnapshot(let current)): result = .volumeSnapshot(withStatus(sent, current))
        default:
            throw APIFailure.badRequest("\(object.kind) has no status to write")
        }
        return result
    }
}
