// swift-tools-version: 6.1
// Reroute: reference-model verification suite for visual-token routing in VLMs.
import Foundation
import PackageDescription

let package = Package(
    name: "Reroute",
    platforms: [.macOS(.v14)],
    products: [
        // The suite as a library: model + checkpoints, reference decoder, HDF5, verification.
        .library(name: "RerouteSuite", targets: ["RerouteModel", "RerouteFixtures", "RerouteHDF5", "RerouteReference", "RerouteFast", "RerouteRouting", "RerouteTrace", "RerouteVerify", "RerouteConformance"]),
        .executable(name: "reroute", targets: ["RerouteCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
    ],
    targets: [
        // System libraries, found through pkg-config (Debian: libhdf5-dev, libopenblas-dev).
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5", providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),

        // Model configuration, safetensors checkpoints, weights, projector, prompt cases.
        .target(name: "RerouteModel"),
        // The one seeded generator, random model configs and weights, random cases (goldens,
        // benchmarks, conformance, tests, the example adapter).
        .target(name: "RerouteFixtures", dependencies: ["RerouteModel"]),
        // Thin Swift layer over the HDF5 C library.
        .target(name: "RerouteHDF5", dependencies: ["CHDF5"]),
        // The scalar reference decoder: plain loops, Double accumulation (SPEC.md §2).
        .target(name: "RerouteReference", dependencies: ["RerouteModel"]),
        // Routing policies: scorers, schedules, actions, positions, Nüwa's vision stage,
        // the session that turns scores into decisions, and the budget calculator (SPEC.md §8).
        .target(name: "RerouteRouting", dependencies: ["RerouteModel"]),
        // A 6×16 AVX2+FMA GEMM over weights packed once, for the few-row products of routed layers.
        // libmvec: glibc's vector expf for the AVX2 and AVX-512 elementwise paths.
        .target(name: "CRerouteKernels", linkerSettings: [.linkedLibrary("mvec")]),
        // The optimized decoder: Float32, OpenBLAS sgemm/sgemv, SIMD kernels (SPEC.md §10).
        .target(name: "RerouteFast", dependencies: ["RerouteModel", "CBLAS", "CRerouteKernels"]),
        // HDF5 traces: the schema (SPEC.md §9), reading and writing.
        .target(name: "RerouteTrace", dependencies: ["RerouteModel", "RerouteHDF5", "RerouteRouting"]),
        // Golden cases and traces, the comparison library, replay and the `verify` job.
        // Linux system calls Glibc does not export to Swift (renameat2 RENAME_EXCHANGE).
        .target(name: "CRerouteSys"),
        .target(name: "RerouteVerify", dependencies: [
            "CRerouteSys", "RerouteModel", "RerouteFixtures", "RerouteHDF5", "RerouteReference", "RerouteFast", "RerouteRouting", "RerouteTrace",
            .product(name: "Crypto", package: "swift-crypto"),  // SHA-256 of the golden manifest
        ]),
        // The conformance suite for pruner adapters (SPEC.md §11).
        .target(name: "RerouteConformance", dependencies: [
            "RerouteModel", "RerouteFixtures", "RerouteReference", "RerouteFast", "RerouteRouting", "RerouteTrace", "RerouteVerify",
        ]),
        // A worked example of a new adapter, outside the suite's own sources (docs/adding-an-adapter.md).
        .target(name: "DARTStyleAdapter", dependencies: ["RerouteRouting", "RerouteFixtures"], path: "Examples/DARTStyleAdapter/Sources/DARTStyleAdapter"),
        .executableTarget(name: "dart-style-conform", dependencies: ["DARTStyleAdapter", "RerouteConformance"],
                          path: "Examples/DARTStyleAdapter/Sources/dart-style-conform"),
        // A worked example of a merging adapter (a merge before the LLM), against the public API only.
        .target(name: "MergingAdapter", dependencies: ["RerouteModel", "RerouteRouting"], path: "Examples/MergingAdapter/Sources/MergingAdapter"),
        .executableTarget(name: "merging-conform", dependencies: ["MergingAdapter", "RerouteConformance"],
                          path: "Examples/MergingAdapter/Sources/merging-conform"),
        // A counting allocator (forwards to glibc's) linked into `reroute` so bench and time can
        // report heap allocations per run of every thread and library.
        .target(name: "CRerouteAllocationCounter"),
        // The benchmark harness: one median, prefill timing, allocation counts, machine probes.
        .target(name: "RerouteBench", dependencies: ["CRerouteAllocationCounter", "CBLAS", "CRerouteKernels", "RerouteModel", "RerouteFixtures", "RerouteFast",
                                                     "RerouteReference", "RerouteRouting", "RerouteVerify"]),
        // The `reroute` commands (swift-argument-parser): parse, validate, call the libraries, print.
        .target(
            name: "RerouteCommands",
            dependencies: [
                "RerouteBench", "RerouteVerify", "RerouteConformance", "RerouteModel", "RerouteFixtures", "RerouteReference", "RerouteFast", "RerouteRouting", "RerouteTrace",
                "RerouteHDF5", "CBLAS", "CHDF5",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The `reroute` executable: RerouteCommands' entry point, with the counting allocator.
        .executableTarget(name: "RerouteCLI", dependencies: ["RerouteCommands", "CRerouteAllocationCounter", "CRerouteSys"]),
        .testTarget(
            name: "RerouteTests",
            dependencies: [
                "RerouteModel", "RerouteFixtures", "RerouteHDF5", "RerouteReference", "RerouteFast", "RerouteRouting", "RerouteTrace",
                "RerouteVerify", "RerouteConformance", "DARTStyleAdapter", "MergingAdapter",
                "RerouteBench",  // the machine probes (FMA peak loop)
                "RerouteCommands",  // the argument surface in-process
                "RerouteCLI",  // built so the end-to-end tests can run the `reroute` binary
                "CRerouteAllocationCounter",  // per-thread allocation counts of the fast decoder
                "CRerouteKernels",  // the packed-weight kernel against a Double product
            ],
            exclude: ["Fixtures"]  // inputs read by path (fuzzer finds)
        ),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer targets (tools/fuzz.sh builds them with REROUTE_FUZZ=1 and -sanitize=fuzzer in
// .build-fuzz; they have no `main` of their own, so they are not part of normal builds).
if ProcessInfo.processInfo.environment["REROUTE_FUZZ"] != nil {
    let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
    for (name, deps) in [("FuzzSafeTensors", ["RerouteModel"]), ("FuzzModelConfig", ["RerouteModel"]),
                         ("FuzzTraceReader", ["RerouteTrace", "RerouteConformance"]), ("FuzzPolicyFile", ["RerouteRouting"]),
                         ("FuzzPromptCase", ["RerouteModel"]), ("FuzzCommandLine", ["RerouteCommands", argumentParser])] as [(String, [Target.Dependency])] {
        package.targets.append(.executableTarget(name: name, dependencies: deps, path: "Fuzz/\(name)",
                                                 swiftSettings: [.unsafeFlags(["-parse-as-library"])],
                                                 linkerSettings: [.unsafeFlags(["-sanitize=fuzzer", "-use-ld=lld"])]))
    }
}
