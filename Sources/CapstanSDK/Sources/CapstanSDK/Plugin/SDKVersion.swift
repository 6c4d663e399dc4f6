/// The SDK's version and the compiler's, as compiled into whoever uses them.
///
/// Every member is `@_alwaysEmitIntoClient`: a plugin carries the numbers it was *built* against,
/// not the ones of the libCapstanSDK.so it happens to load next to (DESIGN.md rule 3).
public enum SDKVersion {
    /// Raised for changes that break plugins; the host refuses other majors.
    @_alwaysEmitIntoClient public static var major: UInt16 { 1 }
    /// Raised for additions; a host runs plugins built against its minor or older.
    @_alwaysEmitIntoClient public static var minor: UInt16 { 6 }
    /// `1.0`.
    @_alwaysEmitIntoClient public static var string: String { "\(major).\(minor)" }

    /// The Swift compiler that compiled the caller, e.g. `6.3.1`. Swift has no stable ABI on
    /// Linux, so host and Swift plugins must agree on it exactly.
    @_alwaysEmitIntoClient public static var compilerVersion: String {
        #if compiler(>=7.0)
        return "7.0+"
        #elseif compiler(>=6.5)
        return "6.5"
        #elseif compiler(>=6.4.3)
        return "6.4.3"
        #elseif compiler(>=6.4.2)
        return "6.4.2"
        #elseif compiler(>=6.4.1)
        return "6.4.1"
        #elseif compiler(>=6.4)
        return "6.4"
        #elseif compiler(>=6.3.5)
        return "6.3.5"
        #elseif compiler(>=6.3.4)
        return "6.3.4"
        #elseif compiler(>=6.3.3)
        return "6.3.3"
        #elseif compiler(>=6.3.2)
        return "6.3.2"
        #elseif compiler(>=6.3.1)
        return "6.3.1"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2.4)
        return "6.2.4"
        #elseif compiler(>=6.2.3)
        return "6.2.3"
        #elseif compiler(>=6.2.2)
        return "6.2.2"
        #elseif compiler(>=6.2.1)
        return "6.2.1"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1.3)
        return "6.1.3"
        #elseif compiler(>=6.1.2)
        return "6.1.2"
        #elseif compiler(>=6.1.1)
        return "6.1.1"
        #elseif compiler(>=6.1)
        return "6.1"
        #elseif compiler(>=6.0.3)
        return "6.0.3"
        #elseif compiler(>=6.0.2)
        return "6.0.2"
        #elseif compiler(>=6.0.1)
        return "6.0.1"
        #elseif compiler(>=6.0)
        return "6.0"
        #else
        return "older than 6.0"
        #endif
    }
}
