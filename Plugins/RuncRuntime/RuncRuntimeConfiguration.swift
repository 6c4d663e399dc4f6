import CapstanSDK
import Foundation

/// Settings of the runc runtime.
struct RuncRuntimeConfiguration: PluginConfiguration {
    /// Where instance folders (`<root>/instances/<id>/`), unpacked images (`<root>/images/`)
    /// and, by default, runc's state live; defaults to the plugin's state directory.
    var root: String?
    /// The runc binary; defaults to `runc` on PATH (or in the sbin folders).
    var runc: String?
    /// runc's own state folder (`runc --root`); defaults to `<root>/runc`.
    var runcRoot: String?
    /// The umoci binary, to unpack OCI image layouts; defaults to `umoci` on PATH.
    var umoci: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case root, runc, runcRoot, umoci }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        root = try container.decodeIfPresent(String.self, forKey: .root)
        runc = try container.decodeIfPresent(String.self, forKey: .runc)
        runcRoot = try container.decodeIfPresent(String.self, forKey: .runcRoot)
        umoci = try container.decodeIfPresent(String.self, forKey: .umoci)
    }

    func validate() -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        for (key, value) in [("root", root), ("runcRoot", runcRoot)] {
            if let value, !value.hasPrefix("/") { problems.append(ValidationProblem(path: key, message: "\"\(value)\" is not an absolute path")) }
        }
        for (key, value) in [("runc", runc), ("umoci", umoci)] {
            guard let value else { continue }
            if !value.hasPrefix("/") {
                problems.append(ValidationProblem(path: key, message: "\"\(value)\" is not an absolute path"))
            } else if !FileManager.default.isExecutableFile(atPath: value) {
                problems.append(ValidationProblem(path: key, message: "\"\(value)\" is not an executable file"))
            }
        }
        return problems
    }
}
