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
}
