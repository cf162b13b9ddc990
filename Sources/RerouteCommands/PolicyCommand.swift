import ArgumentParser
import Foundation
import RerouteRouting
import RerouteVerify

/// `reroute policy list | show NAME [--json]`: the catalog, each policy as a file to start from.
struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "List the shipped policies, or print one as a policy file (reroute.policy v1) to start from.",
        discussion: HelpText.reflowed("""
            Every command that takes --policy NAME also takes --policy-file FILE. A policy file
            holds every value of a policy (SPEC.md §8.14): scorer, schedule (decision layers at a
            stated reference depth, keep ratios of the original visual tokens or integer counts,
            count rule), action, positions, vision-side stage, budget matching, provenance, and the
            selection rule of policies that do not keep the top-k of their scorer's scores.
            `reroute policy show NAME --json > mine.json` gives a complete file to edit.
            """),
        subcommands: [List.self, Show.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The shipped policies, one per line.")
        func run() {
            for p in PolicyCatalog.all {
                let layers = p.decisionLayers.map(String.init).joined(separator: ",")
                print(pad(p.name, 30) + pad(p.isDense ? "-" : "layers \(layers) of \(p.referenceDepth)", 28) + (p.provenance ?? ""))
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One policy: a summary, or with --json its policy file.")
        @Argument(help: "Policy name (see `reroute policy list`).") var name: String
        @Flag(help: "Print the policy file (reroute.policy v1 JSON).") var json = false

        func run() throws {
            guard let p = PolicyCatalog.named(name) else {
                throw ValidationError("unknown policy '\(name)'; known: \(PolicyCatalog.names.joined(separator: ", "))")
            }
            if json { return print(PolicyFile.encode(p), terminator: "") }
            print("""
                policy     \(p.name)
                selection  \(p.selection.map { "\($0.summary) (the scorer is not read)" } ?? "top-k of the scorer's scores")
                scorer     \(p.scorer.query), \(p.scorer.attention), heads \(p.scorer.heads.rawValue), softmax over \(p.scorer.domain.rawValue)
                schedule   decision layers \(p.decisionLayers) at \(p.referenceDepth) layers; \(p.keepCounts.map { "keep counts \($0)" } ?? "keep ratios \(p.keepRatios)"), count rule \(p.countRule.rawValue)
                action     \(p.action)
                positions  \(p.positions.rawValue)
                vision     \(p.visionStage.map { "Nüwa stage 1, keep ratio \($0.keepRatio), \($0.perRegion) per 2×2 region" }
                    ?? p.visionZip.map { "VisionZip, dominant \($0.dominantRatio) (CLS included) and contextual \($0.contextualRatio) of N; contiguous positions" }
                    ?? "none")
                matching   \(p.budgetMatching)
                provenance \(p.provenance ?? "-")
                """)
        }
    }
}

/// The policies a command was given: catalog names and policy files, in that order.
func resolvePolicies(names: [String], files: [String]) throws -> [RoutingPolicy] {
    let named = try names.map { n -> RoutingPolicy in
        guard let p = PolicyCatalog.named(n) else {
            throw ValidationError("unknown policy '\(n)'; known: \(PolicyCatalog.names.joined(separator: ", ")) (or --policy-file FILE)")
        }
        return p
    }
    return named + (try files.map { try PolicyFile.load(path: $0) })
}
