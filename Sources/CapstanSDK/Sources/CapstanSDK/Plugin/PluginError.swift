import CapstanCore
/// A fault inside a plugin call, with a code the host can act on.
///
/// Decisions (a node does not fit) are return values; faults (the disk is full, the volume is
/// gone, the config is wrong) throw this. New codes can be added without breaking plugins.
public struct PluginError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of fault it is; compare with the static members.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The object does not exist.
        public static let notFound = Code("notFound")
        /// An object of that name exists with other parameters.
        public static let alreadyExists = Code("alreadyExists")
        /// The request itself is wrong; retrying it unchanged will not help.
        public static let invalidArgument = Code("invalidArgument")
        /// Out of capacity, ports, space.
        public static let resourceExhausted = Code("resourceExhausted")
        /// The system is not in a state that allows it (volume still published, instance running).
        public static let failedPrecondition = Code("failedPrecondition")
        /// The plugin does not implement this call (see its capabilities).
        public static let unimplemented = Code("unimplemented")
        /// A transient fault; retry later.
        public static let unavailable = Code("unavailable")
        /// The plugin's configuration is invalid; see ``PluginError/problems``.
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// Anything else.
        public static let `internal` = Code("internal")
    }

    public var code: Code
    public var message: String
    /// Field-level problems, for ``Code/invalidConfiguration`` and ``Code/invalidArgument``.
    public var problems: [ValidationProblem]

    public init(_ code: Code, _ message: String, problems: [ValidationProblem] = []) {
        self.code = code
        self.message = message
        self.problems = problems
    }

    public var description: String {
        ([message] + problems.map { "  \($0)" }).joined(separator: "\n")
    }
}
