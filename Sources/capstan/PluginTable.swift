import CapstanSDK
import Foundation
import PluginHost

/// The text shown by `capstan plugins`.
enum PluginTable {
    static func render(_ host: PluginHost, configuration: HostConfiguration) -> String {
        var rows: [[String]] = [["PLUGIN", "KIND", "LIBRARY", "VERSION", "SDK", "SWIFT", "SHA256", "STATUS"]]
        var reasons: [String] = []
        for report in host.reports {
            let library = report.libraryName ?? URL(fileURLWithPath: report.path).lastPathComponent
            let sha = report.sha256.map { String($0.prefix(12)) } ?? "-"
            if let failure = report.failure {
                rows.append(["-", report.kinds.joined(separator: ",").nonEmpty ?? "-", library, report.libraryVersion ?? "-", report.sdkVersion ?? "-", report.compiler ?? "-", sha, "refused (\(failure.check.rawValue))"])
                reasons.append("\(report.path):\n  \(failure.message)")
                continue
            }
            for plugin in report.plugins {
                let isDefault = host.registry.defaults[PluginKind(name: plugin.kind) ?? .scheduler] == plugin.name && plugin.failure == nil
                let status = plugin.failure.map { "refused (\($0.check.rawValue))" } ?? (isDefault ? "loaded (default)" : "loaded")
                rows.append([plugin.name, plugin.kind, library, report.libraryVersion ?? "-", report.sdkVersion ?? "-", report.compiler ?? "-", sha, status])
                if let failure = plugin.failure { reasons.append("\(report.path) (\(plugin.name)):\n  \(failure.message.replacingOccurrences(of: "\n", with: "\n  "))") }
            }
        }
        var text = table(rows)
        for problem in host.problems { reasons.append("\(configuration.source): \(problem)") }
        if !reasons.isEmpty { text += "\n\nRefused:\n" + reasons.joined(separator: "\n") }
        return text
    }

    static func detail(_ report: LibraryReport) -> String {
        var lines = [
            "file:      \(report.path)",
            "sha256:    \(report.sha256 ?? "-")",
            "library:   \(report.libraryName ?? "-") \(report.libraryVersion ?? "")",
            "sdk:       \(report.sdkVersion ?? "-") (host SDK \(SDKVersion.string))",
            "swift:     \(report.compiler ?? "-") (host Swift \(SDKVersion.compilerVersion))",
            "kinds:     \(report.kinds.joined(separator: ", ").nonEmpty ?? "-")",
        ]
        for plugin in report.plugins {
            lines.append("plugin:    \(plugin.name) (\(plugin.kind), config \(plugin.configurationType)): \(plugin.failure.map { "refused: \($0.message)" } ?? "loaded")")
        }
        lines.append("status:    " + (report.failure.map { "refused at check \($0.check.rawValue): \($0.message)" } ?? (report.isLoaded ? "loaded" : "refused")))
        return lines.joined(separator: "\n")
    }

    static func json(_ reports: [LibraryReport]) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(reports), as: UTF8.self)
    }

    /// Left-aligned columns, two spaces apart.
    static func table(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
