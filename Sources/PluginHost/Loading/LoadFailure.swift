/// Why a plugin library or one of its plugins was refused: the check that failed and the message.
public struct LoadFailure: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The checks, in the order the loader makes them (DESIGN.md section 2, rule 4).
    public enum Check: String, Sendable, Hashable, Codable, CaseIterable {
        case file = "file"
        case elf = "elf"
        case permissions = "permissions"
        case sha256 = "sha256"
        case dlopen = "dlopen"
        case entrySymbol = "entry-symbol"
        case magic = "magic"
        case structSize = "struct-size"
        case sdkMajor = "sdk-major"
        case sdkMinor = "sdk-minor"
        case compiler = "compiler"
        case kind = "kind"
        case registration = "registration"
        case duplicateName = "duplicate-name"
        case configuration = "configuration"
    }

    public var check: Check
    public var message: String

    public init(_ check: Check, _ message: String) {
        self.check = check
        self.message = message
    }

    public var description: String { message }
}
