import CapstanAPI
import CapstanCore

/// The query filters of list and watch: `labelSelector=k=v,k2=v2`, `nodeName=` (instances),
/// `owner=Kind/name`, `involvedObject=Kind/name` (events).
struct ObjectFilter: Sendable {
    var labels: [(String, String)] = []
    var nodeName: String?
    var owner: String?
    var involvedObject: String?

    /// - Parameter query: looks up a query parameter.
    init(_ query: (String) -> String?) throws {
        if let selector = query("labelSelector") {
            do {
                labels = try LabelSelector.parse(selector)
            } catch {
                throw APIFailure.badRequest("labelSelector: \(error.message)")
            }
        }
        nodeName = query("nodeName")
        owner = query("owner")
        involvedObject = query("involvedObject")
    }

    func matches(_ object: AnyResource) -> Bool {
        let metadata = object.metadata
        for (key, value) in labels where metadata.labels[key] != value { return false }
        if let owner, metadata.owner != owner { return false }
        if let nodeName {
            switch object {
            case .instance(let instance) where instance.spec.nodeName == nodeName: break
            // Volumes by the node that handles their plugin calls.
            case .volume(let volume) where volume.spec.controllerNode == nodeName: break
            default: return false
            }
        }
        if let involvedObject {
            guard case .event(let event) = object, event.spec.involvedObject == involvedObject else { return false }
        }
        return true
    }
}
