import RerouteVerify
import RerouteRouting

/// A shipped policy as a conformance subject: its declared tier and its waivers.
public struct CatalogAdapter: PrunerAdapter {
    public var policy: RoutingPolicy
    public var capabilities: AdapterCapabilities

    public init(policy: RoutingPolicy, tier: Tier? = nil, waivers: [Waiver] = []) {
        self.policy = policy
        capabilities = policy.capabilities
        capabilities.tier = tier
        capabilities.waivers = waivers
    }

    public func select(_ input: SelectionInput) throws -> Selection { try policy.select(input) }

    public func with(policy: RoutingPolicy) -> CatalogAdapter {
        var out = self
        out.policy = policy
        return out
    }
}

/// Every shipped policy with what it claims; all of them pass the suite in CI.
public enum ConformanceCatalog {
    /// What DART as published does not claim, as its official code does not.
    static let dartWaivers = [
        Waiver(law: ConformanceLaw.positionOffsetInvariance.rawValue,
               reason: "pivots are ranked by the L1 norm of keys after RoPE, which a rotation does not preserve (only the L2 norm does): absolute positions change the pivots, as in the official code"),
        Waiver(law: ConformanceLaw.ratioOneIsDense.rawValue,
               reason: "at ratio 1 the official count 4 + 8·⌊N/8⌋ (at most N) keeps fewer than N when N mod 8 > 4 (SPEC.md §8.2)"),
        Waiver(law: ConformanceLaw.budgetZeroAndFull.rawValue,
               reason: "at ratio 1 the official count 4 + 8·⌊N/8⌋ (at most N) is not the full budget N when N mod 8 > 4; ratio 0 is checked with the floor rule, which keeps none (SPEC.md §8.2)"),
    ]

    public static var all: [CatalogAdapter] {
        var list = [RoutingPolicy.dense, .fastV(), .fastV(k: 2, r: 0.75), .pyramidDrop(), .pyramidDrop(lambda: 0.25),
                    .pyramidDropOriginalPositions()].map { CatalogAdapter(policy: $0) }
        for tier in Tier.allCases {
            list += [RoutingPolicy.fastVRelease(tier: tier), .nuwa(tier: tier), .rerouteFastV(tier: tier), .rerouteNuwa(tier: tier), .divPrune(tier: tier),
                     .dartEmbed(tier: tier), .visionZip(tier: tier)]
                .map { CatalogAdapter(policy: $0, tier: tier) }
            // DART's T is the paper's retained count after layer 2 (`max_num_trunction`), not avg_T.
            list.append(CatalogAdapter(policy: .dart(tier: tier), waivers: dartWaivers))
            // The engine's integer pruning_ratio cannot keep T/576 exactly (190 of 576 for 192): no tier claim.
            list.append(CatalogAdapter(policy: .cdPruner(tier: tier), waivers: [Waiver(law: ConformanceLaw.prefixLengthInvariance.rawValue,
                reason: "relevance is to the mean of every text token's embedding, so more text before the image changes it, as in the engine")]))
            let avg64 = "the release's avg64 configs are not λ-geometric: avg_T is 80.4 (PDrop) and 84.1 (Reroute), not 64 (SPEC.md §8.12, open upstream)"
            list.append(CatalogAdapter(policy: .pyramidDropRelease(tier: tier), tier: tier,
                                       waivers: tier == .t64 ? [Waiver(law: ConformanceLaw.tierDeclared.rawValue, reason: avg64)] : []))
            list.append(CatalogAdapter(policy: .reroutePDrop(tier: tier), tier: tier,
                                       waivers: tier == .t64 ? [Waiver(law: ConformanceLaw.tierDeclared.rawValue, reason: avg64),
                                                                Waiver(law: ConformanceLaw.budgetMatching.rawValue,
                                                                       reason: "avg_T 84.1 vs the PDrop baseline's 80.4 (4.6%): the release's avg64 profiles (SPEC.md §8.12)")] : []))
        }
        for q in [0.5, 0.75] {
            list.append(CatalogAdapter(policy: .evs(pruningRate: q), waivers: [Waiver(law: ConformanceLaw.ratioOneIsDense.rawValue,
                reason: "vLLM's recomputed positions start the text after a video at base + cols, not transformers' base + max(t_max, rows − 1, cols − 1) + 1, even when nothing is pruned (SPEC.md §8.6)")]))
            list.append(CatalogAdapter(policy: .evs(pruningRate: q, recomputed: false)))
        }
        return list
    }

    public static func named(_ name: String) -> CatalogAdapter? { all.first { $0.policy.name == name } }
}
