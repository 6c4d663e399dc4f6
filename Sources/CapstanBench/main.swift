// Capstan benchmarks. Run in release:  swift build -c release && .build/release/capstan-bench [plugin-call|bus|json|scheduling|control-plane|network|storage|election|ha|all]
import CapstanBinpack
import CapstanSDK
import Foundation
import PluginHost

let arguments = Array(CommandLine.arguments.dropFirst())
let which = arguments.first ?? "all"
let products = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]).deletingLastPathComponent().path

print("# capstan-bench (\(ProcessInfo.processInfo.activeProcessorCount) cores, Swift \(SDKVersion.compilerVersion))\n")
if which == "plugin-call" || which == "all" { PluginCallBenchmark.run(products: products) }
if which == "bus" || which == "all" { await BusBenchmark.run() }
if which == "json" || which == "all" { JSONBenchmark.run() }
if which == "scheduling" || which == "all" { SchedulingBenchmark.run(products: products) }
if which == "control-plane" || which == "all" { await ControlPlaneBenchmark.run(products: products) }
if which == "network" || which == "all" { await NetworkBenchmark.run(products: products) }
if which == "network-inside" { await NetworkBenchmark.inside(products: products) }
if which == "storage" || which == "all" { await StorageBenchmark.run(products: products) }
if which == "election" || which == "all" { await ElectionBenchmark.run() }
if which == "ha" || which == "all" { await HABenchmark.run(products: products) }
