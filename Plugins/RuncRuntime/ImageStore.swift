import CapstanSupervision
import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An instance's root file system, and the defaults its image's config gives.
struct ResolvedImage: Sendable, Equatable {
    /// Absolute path of the root file system.
    var rootfs: String
    /// Entrypoint followed by cmd; empty for a bare rootfs directory.
    var args: [String] = []
    /// `KEY=value` entries from the image's config.
    var env: [String] = []
    var cwd: String?
}

/// Turns a request's `image` into a root file system.
///
/// `image` is an absolute path, either a root file system directory (used in place, read-only)
/// or an OCI image layout (a folder with an `oci-layout` file), optionally followed by `:TAG`
/// (default `latest`). A layout is unpacked once per manifest digest with `umoci unpack` into
/// `<cache>/<algorithm>-<hex>/` and shared by every container of that image.
struct ImageStore: Sendable {
    let cache: URL
    /// umoci, when the operator named it; otherwise looked up on PATH when a layout needs it.
    let umoci: String?

    func resolve(_ image: String) async throws -> ResolvedImage {
        guard image.hasPrefix("/") else {
            throw PluginError(.invalidArgument, "image \"\(image)\" is not an absolute path; give a root file system directory or an OCI image layout")
        }
        let (folder, tag) = try locate(image)
        let layoutMarker = URL(fileURLWithPath: folder).appendingPathComponent("oci-layout").path
        if FileManager.default.fileExists(atPath: layoutMarker) {
            return try await unpack(layout: folder, tag: tag ?? "latest")
        }
        return ResolvedImage(rootfs: URL(fileURLWithPath: folder).standardizedFileURL.path)
    }

    /// The folder and tag `image` names.
    private func locate(_ image: String) throws -> (folder: String, tag: String?) {
        if isDirectory(image) { return (image, nil) }
        if let colon = image.lastIndex(of: ":") {
            let folder = String(image[..<colon])
            let tag = String(image[image.index(after: colon)...])
            if isDirectory(folder), FileManager.default.fileExists(atPath: "\(folder)/oci-layout"), !tag.isEmpty, !tag.contains("/") {
                return (folder, tag)
            }
        }
        let what = FileManager.default.fileExists(atPath: image) ? "is not a directory" : "does not exist"
        throw PluginError(.invalidArgument, "image \"\(image)\" \(what); give a root file system directory or an OCI image layout (a folder with an oci-layout file, optionally followed by :TAG)")
    }

    private func unpack(layout: String, tag: String) async throws -> ResolvedImage {
        let digest = try manifestDigest(layout: layout, tag: tag)
        let bundle = cache.appendingPathComponent(digest.replacingOccurrences(of: ":", with: "-"))
        let config = bundle.appendingPathComponent("config.json")
        if !FileManager.default.fileExists(atPath: config.path) {
            guard let umoci = umoci ?? ExternalCommand.find("umoci") else {
                throw PluginError(.failedPrecondition, "image \"\(layout)\" is an OCI image layout; unpacking it needs umoci, which is not on PATH (install Debian's umoci, or give a root file system directory)")
            }
            try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
            // Unpacked beside its final place and renamed, so a half-unpacked image is never used.
            let scratch = cache.appendingPathComponent(".unpack-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: scratch) }
            let rootless = geteuid() == 0 ? [] : ["--rootless"]
            _ = try await ExternalCommand.run(umoci, ["unpack"] + rootless + ["--image", "\(layout):\(tag)", scratch.path], timeout: 600)
            if rename(scratch.path, bundle.path) != 0 && !FileManager.default.fileExists(atPath: config.path) {
                throw PluginError(.internal, "cannot move the unpacked image to \(bundle.path): \(String(cString: strerror(errno)))")
            }
        }
        let unpacked = try JSONDecoder().decode(UnpackedBundle.self, from: Data(contentsOf: config))
        return ResolvedImage(rootfs: bundle.appendingPathComponent("rootfs").path, args: unpacked.process?.args ?? [], env: unpacked.process?.env ?? [], cwd: unpacked.process?.cwd)
    }

    /// The digest of the manifest tagged `tag` in the layout's `index.json`.
    private func manifestDigest(layout: String, tag: String) throws -> String {
        let indexFile = URL(fileURLWithPath: layout).appendingPathComponent("index.json")
        let index: LayoutIndex
        do {
            index = try JSONDecoder().decode(LayoutIndex.self, from: Data(contentsOf: indexFile))
        } catch {
            throw PluginError(.invalidArgument, "image \"\(layout)\": cannot read \(indexFile.path): \(error)")
        }
        let tagged = index.manifests.filter { $0.annotations?[LayoutIndex.refName] != nil }
        guard let manifest = tagged.first(where: { $0.annotations?[LayoutIndex.refName] == tag }) else {
            let tags = tagged.compactMap { $0.annotations?[LayoutIndex.refName] }
            throw PluginError(.invalidArgument, "image \"\(layout)\" has no tag \"\(tag)\" (it has: \(tags.isEmpty ? "none" : tags.joined(separator: ", ")))")
        }
        guard manifest.digest.contains(":"), !manifest.digest.contains("/") else {
            throw PluginError(.invalidArgument, "image \"\(layout)\": malformed digest \"\(manifest.digest)\" for tag \"\(tag)\"")
        }
        return manifest.digest
    }

    private func isDirectory(_ path: String) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
    }

    /// An OCI image layout's `index.json`, as far as tags go.
    private struct LayoutIndex: Decodable {
        static let refName = "org.opencontainers.image.ref.name"
        struct Descriptor: Decodable {
            var digest: String
            var annotations: [String: String]?
        }
        var manifests: [Descriptor]
    }

    /// The runtime config umoci writes beside the unpacked rootfs: where the image's
    /// entrypoint, cmd, env and working directory end up.
    private struct UnpackedBundle: Decodable {
        struct Process: Decodable {
            var args: [String]?
            var env: [String]?
            var cwd: String?
        }
        var process: Process?
    }
}
