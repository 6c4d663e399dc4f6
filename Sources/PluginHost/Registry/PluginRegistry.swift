import CapstanSDK
import Synchronization

/// The created plugins of a process, by unique name, and the default plugin of each kind.
public final class PluginRegistry: Sendable {
    /// One created plugin.
    public struct Entry: Sendable {
        public let name: String
        public let kind: PluginKind
        /// The file it came from.
        public let library: String
        public let instance: PluginInstance
    }

    private struct State {
        var entries: [Entry] = []
        var defaults: [PluginKind: String] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    /// Adds a created plugin.
    /// - Throws: ``LoadFailure/Check/duplicateName`` when the name is taken.
    public func add(_ entry: Entry) throws(LoadFailure) {
        try state.withLock { (state: inout State) throws(LoadFailure) in
            if let existing = state.entries.first(where: { $0.name == entry.name }) {
                throw LoadFailure(.duplicateName, "a plugin named \"\(entry.name)\" is already loaded from \(existing.library); plugin names must be unique")
            }
            state.entries.append(entry)
        }
    }

    /// True when a plugin of that name is loaded (of any kind).
    public func contains(_ name: String) -> Bool { state.withLock { $0.entries.contains { $0.name == name } } }

    public var entries: [Entry] { state.withLock { $0.entries } }

    public func entry(named name: String) -> Entry? { state.withLock { $0.entries.first { $0.name == name } } }

    /// Names the default plugin of a kind (validated by ``PluginHost``).
    func setDefault(_ name: String, for kind: PluginKind) { state.withLock { $0.defaults[kind] = name } }

    /// The plugin named, or the kind's default when `name` is nil; nil when absent or of another kind.
    public func plugin(_ kind: PluginKind, named name: String? = nil) -> PluginInstance? {
        state.withLock { state in
            let wanted = name ?? state.defaults[kind] ?? state.entries.first(where: { $0.kind == kind })?.name
            return state.entries.first { $0.name == wanted && $0.kind == kind }?.instance
        }
    }

    public func scheduler(named name: String? = nil) -> (any SchedulerPlugin)? {
        if case .scheduler(let plugin)? = plugin(.scheduler, named: name) { return plugin }
        return nil
    }

    public func storage(named name: String? = nil) -> (any StorageProvisioner)? {
        if case .storage(let plugin)? = plugin(.storage, named: name) { return plugin }
        return nil
    }

    public func network(named name: String? = nil) -> (any NetworkPlugin)? {
        if case .network(let plugin)? = plugin(.network, named: name) { return plugin }
        return nil
    }

    public func loadBalancer(named name: String? = nil) -> (any LoadBalancerPlugin)? {
        if case .loadBalancer(let plugin)? = plugin(.loadBalancer, named: name) { return plugin }
        return nil
    }

    public func runtime(named name: String? = nil) -> (any RuntimePlugin)? {
        if case .runtime(let plugin)? = plugin(.runtime, named: name) { return plugin }
        return nil
    }

    /// The default plugin name of every kind that has one.
    public var defaults: [PluginKind: String] { state.withLock { $0.defaults } }
}
