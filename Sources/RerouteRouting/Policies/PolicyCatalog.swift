/// Every shipped policy by name (`reroute run --policy NAME`, goldens, conformance).
public enum PolicyCatalog {
    public static var all: [RoutingPolicy] {
        var list: [RoutingPolicy] = [.dense, .fastV(), .fastV(k: 2, r: 0.75), .pyramidDrop(), .pyramidDrop(lambda: 0.25),
                                     .pyramidDropOriginalPositions()]
        for tier in Tier.allCases {
            list += [.fastVRelease(tier: tier), .pyramidDropRelease(tier: tier), .nuwa(tier: tier),
                     .rerouteFastV(tier: tier), .reroutePDrop(tier: tier), .rerouteNuwa(tier: tier), .divPrune(tier: tier),
                     .dartEmbed(tier: tier), .dart(tier: tier), .cdPruner(tier: tier), .visionZip(tier: tier)]
        }
        for q in [0.5, 0.75] { list += [.evs(pruningRate: q), .evs(pruningRate: q, recomputed: false)] }
        return list
    }

    public static var names: [String] { all.map(\.name) }

    public static func named(_ name: String) -> RoutingPolicy? { all.first { $0.name == name } }
}
