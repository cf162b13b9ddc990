/// Budget tiers of the Reroute release: average visual tokens per layer (avg_T) for
/// LLaVA-1.5-7B's N = 576 and 32 layers (elmma/mllm-reroute@9d42204 `configs/experiment/**`).
/// On other models the tier names the same ratios.
public enum Tier: Int, Sendable, CaseIterable, Codable {
    case t192 = 192, t128 = 128, t64 = 64
}
