import CapstanFuzzTargets
import Foundation
#if FUZZING
import CFuzzerDriver
#endif

/// The target this process fuzzes: `$CAPSTAN_FUZZ_TARGET` (manifest-yaml, manifest-json,
/// quantity, label-selector, config, runtime-record).
let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["CAPSTAN_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        FileHandle.standardError.write(Data("set CAPSTAN_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return target
}()

#if FUZZING
/// The executable's entry point when built with `-sanitize=fuzzer -D FUZZING -parse-as-library`
/// (SwiftPM names it `<module>_main`): hands the process to libFuzzer's driver.
@_cdecl("CapstanFuzz_main")
public func fuzzerMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var vector = argv
    _ = selectedTarget
    return LLVMFuzzerRunDriver(&count, &vector) { data, size in
        selectedTarget.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
        return 0
    }
}
#else
/// Without libFuzzer: `capstan-fuzz seeds DIR` writes every target's seed inputs (one folder a
/// target), and `CAPSTAN_FUZZ_TARGET=… capstan-fuzz FILE…` replays inputs (a crash found by
/// the fuzzer, say) through a target.
@main
struct ReplayCommand {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "seeds", arguments.count == 2 {
            for target in FuzzTarget.allCases {
                let folder = URL(fileURLWithPath: arguments[1]).appendingPathComponent(target.rawValue)
                try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for (index, seed) in target.seeds.enumerated() {
                    _ = FileManager.default.createFile(atPath: folder.appendingPathComponent("seed-\(index)").path, contents: Data(seed))
                }
            }
            return
        }
        for path in arguments {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("\(path): cannot be read\n".utf8))
                exit(1)
            }
            selectedTarget.run(Array(data))
            print("\(path): ok")
        }
    }
}
#endif
