import Foundation

/// The first check on a plugin file: it exists, and it is an ELF shared object.
enum ELFFile {
    /// Why `path` cannot be a plugin library, or nil when it can be dlopen-ed.
    static func problem(at path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            return "file does not exist"
        }
        if isDirectory.boolValue { return "is a directory, not a shared library" }
        guard let handle = FileHandle(forReadingAtPath: path) else { return "cannot be read (check its permissions)" }
        defer { try? handle.close() }
        let header = (try? handle.read(upToCount: 18)) ?? Data()
        guard header.count >= 18, header.prefix(4) == Data([0x7F, 0x45, 0x4C, 0x46]) else {
            return "is not an ELF file (a plugin must be a shared library built with `swift build` or `cc -shared`)"
        }
        // e_type (little-endian on every platform Capstan runs on): 3 = ET_DYN.
        let type = UInt16(header[16]) | UInt16(header[17]) << 8
        guard type == 3 else { return "is an ELF file but not a shared library (e_type \(type)); build it as a `.dynamic` product" }
        return nil
    }
}
