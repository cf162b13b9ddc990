import Foundation
import RerouteModel
import Testing

/// Inputs the libFuzzer targets (tools/fuzz.sh) crashed on, kept so the fixes stay fixed.
@Suite struct FuzzRegressionTests {
    /// FuzzModelConfig, 2026-11-26: a LLaMA config with `num_attention_heads: 0` and no
    /// `head_dim` divided by zero in the heads-divide-hidden check, before validation.
    @Test func zeroHeadsIsAnErrorNotADivisionByZero() {
        let json = #"{"model_type":"llama","hidden_size":64,"num_attention_heads":0,"num_hidden_layers":2,"intermediate_size":8,"vocab_size":16}"#
        #expect {
            try ModelConfig.parse(json: Data(json.utf8), file: "fuzz/config.json")
        } throws: { error in
            (error as? InputError).map { "\($0)".contains("num_attention_heads") && "\($0)".contains("fuzz/config.json") } ?? false
        }
    }

    /// FuzzTraceReader, 2026-11-26: traces whose global heap is damaged behind a string
    /// attribute make libhdf5's H5Aread spin for minutes (hang) or read out of bounds (SIGSEGV),
    /// inside the C library. Commands that read files from outside first read them in a child
    /// process and refuse them (exit code 2, naming the file) when it crashes or outlives
    /// REROUTE_READ_TIMEOUT seconds.
    @Test(arguments: [("fuzz-hdf5-heap-hang.h5", "did not finish"), ("fuzz-hdf5-heap-segv.h5", "crashed a child process")])
    func hdf5LibraryFailuresAreRefused(fixture: String, reason: String) throws {
        let file = Repo.root.appendingPathComponent("Tests/RerouteTests/Fixtures/\(fixture)").path
        let dir = try TempDir()
        defer { dir.cleanup() }
        for args in [["show", file], ["conform", "--trace", file], ["diff", file, file],
                     ["run", "--model", Repo.model("tiny-llama").path, "--case", file, "--policy", "dense", "--out", dir.path("x.h5")]] {
            let start = Date()
            let p = try Subprocess.run(args, deadline: 60, environment: ["REROUTE_READ_TIMEOUT": "2"])
            let message = p.err
            #expect(p.status == 2 && !p.signaled, "\(args)")
            // `run` reads the file as a case, which may not touch the damaged object: any clean refusal.
            #expect(message.contains(file) && (args[0] == "run" || message.contains(reason)), "\(args): \(message)")
            #expect(Date().timeIntervalSince(start) < 30)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path("x.h5")))
    }
}
