import CapstanCore
import Foundation

/// Where an ``EventRecorder`` reads and writes: the store (in the server) or the API (in agents).
public protocol ObjectWriter: Sendable {
    func fetch(kind: String, name: String) async throws -> AnyResource?
    func create(_ object: AnyResource) async throws -> AnyResource
    func update(_ object: AnyResource) async throws -> AnyResource
    /// True for "someone wrote in between" and "already exists": worth a retry.
    func isConflict(_ error: any Error) -> Bool
}

/// Writes Events about objects, like Kubernetes' event recorder: one Event object per
/// (object, reason), whose `count`, `message` and `lastTimestamp` are bumped when it repeats, so
/// a crash-looping instance has one `BackOff` event with a count, not thousands of objects.
public struct EventRecorder: Sendable {
    let writer: any ObjectWriter
    /// `scheduler`, `workload-controller`, `agent/<node>`.
    public let source: String

    public init(writer: any ObjectWriter, source: String) {
        self.writer = writer
        self.source = source
    }

    /// Records; failures are dropped (events are best effort, as in Kubernetes).
    public func record(_ involved: String, reason: String, message: String, type: EventType = .normal) async {
        let name = Self.name(involved: involved, reason: reason)
        let now = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
        // Most events are new: create first (one write), and only when one of that name exists
        // read it and bump its count.
        var exists = false
        for _ in 0..<3 {
            do {
                if !exists {
                    let spec = EventSpec(involvedObject: involved, reason: reason, message: message, type: type, source: source, count: 1, lastTimestamp: now)
                    _ = try await writer.create(.event(Event(name: name, spec: spec)))
                } else if case .event(var event)? = try await writer.fetch(kind: "Event", name: name) {
                    event.spec.count += 1
                    event.spec.message = message
                    event.spec.type = type
                    event.spec.source = source
                    event.spec.lastTimestamp = now
                    _ = try await writer.update(.event(event))
                } else {
                    exists = false
                    continue
                }
                return
            } catch where writer.isConflict(error) {
                exists = true
                continue
            } catch {
                return
            }
        }
    }

    /// `<object-name>-<reason>`, lowercased, cut to a DNS label.
    public static func name(involved: String, reason: String) -> String {
        let objectName = involved.split(separator: "/").last.map(String.init) ?? involved
        let suffix = "-" + reason.lowercased().filter { $0.isLetter || $0.isNumber }
        var prefix = String(objectName.prefix(63 - suffix.count))
        while prefix.hasSuffix("-") { prefix.removeLast() }
        return prefix + suffix
    }
}

extension APIClient: ObjectWriter {
    public func fetch(kind: String, name: String) async throws -> AnyResource? {
        guard let resourceKind = ResourceKind.kind(kind) else { return nil }
        do {
            return try await get(resourceKind, name)
        } catch where error.status == 404 {
            return nil
        }
    }

    public func isConflict(_ error: any Error) -> Bool { (error as? APIError)?.status == 409 }
}
