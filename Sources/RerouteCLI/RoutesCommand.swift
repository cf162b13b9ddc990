import ArgumentParser
import Foundation
import RerouteModel
import RerouteRouting
import RerouteTrace

struct RoutesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes",
        abstract: "Draw a trace's route map: the image grid at every stage.",
        discussion: """
            One panel per stage (the layers before the first decision, then each decision's
            stage). Each grid cell is a visual token: processed, re-entered (processed again after
            being deferred), deferred (bypassing the stage), or removed (deleted, or dropped by a
            vision-side stage). Without --svg, prints the same map as text (P, R, d, .).
            """)
    @Argument(help: "Trace file.") var file: String
    @Option(help: "Write an SVG to this path (atomically).") var svg: String?

    enum State: Character { case processed = "P", reentered = "R", deferred = "d", removed = "." }

    func run() throws {
        let t = try readingUntrusted(file) { try Trace.read(from: file) }
        let grid = t.input.grid
        let llmCells = Set(t.llmGridIndices ?? Array(0..<grid.count))
        var panels: [(title: String, cells: [State])] = []
        let firstLayerEnd = (t.decisions.first?.layer ?? t.config.layers) - 1
        var processed = Set(llmCells)
        panels.append(("layers 0–\(firstLayerEnd)", (0..<grid.count).map { llmCells.contains($0) ? .processed : .removed }))
        var removed = Set(0..<grid.count).subtracting(llmCells)
        for (i, d) in t.decisions.enumerated() {
            let end = i + 1 < t.decisions.count ? t.decisions[i + 1].layer - 1 : t.config.layers - 1
            let kept = Set(d.kept)
            if t.policy.action == .delete { removed.formUnion(d.deferred) }
            let cells: [State] = (0..<grid.count).map { cell in
                if kept.contains(cell) { return processed.contains(cell) ? .processed : .reentered }
                return removed.contains(cell) ? .removed : .deferred
            }
            processed = kept
            panels.append(("layers \(d.layer)–\(end) (k=\(d.budget))", cells))
        }
        if let svg {
            try writeSVG(panels, grid: grid, title: "\(t.policy.name) · \(t.provenance.model) · \(t.input.name)", to: svg)
            print("wrote \(svg): \(panels.count) stage(s)")
        } else {
            for (title, cells) in panels {
                print(title)
                for r in 0..<grid.rows { print("  " + String((0..<grid.cols).map { cells[r * grid.cols + $0].rawValue })) }
            }
            print("P processed, R re-entered, d deferred, . removed")
        }
    }

    func writeSVG(_ panels: [(title: String, cells: [State])], grid: ImageGrid, title: String, to path: String) throws {
        let cell = 12, gap = 24, top = 44
        let panelW = grid.cols * cell, panelH = grid.rows * cell
        let width = panels.count * (panelW + gap) + gap, height = top + panelH + 60
        let colors: [State: String] = [.processed: "#2e7d32", .reentered: "#1565c0", .deferred: "#f9a825", .removed: "#d0d0d0"]
        var s = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(height)" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(gap)" y="18" font-size="13">\(escape(title))</text>

            """
        for (p, panel) in panels.enumerated() {
            let x0 = gap + p * (panelW + gap)
            s += "<text x=\"\(x0)\" y=\"\(top - 8)\">\(escape(panel.title))</text>\n"
            for (i, st) in panel.cells.enumerated() {
                s += "<rect x=\"\(x0 + (i % grid.cols) * cell)\" y=\"\(top + (i / grid.cols) * cell)\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" fill=\"\(colors[st]!)\"/>\n"
            }
        }
        let legend: [(State, String)] = [(.processed, "processed"), (.reentered, "re-entered"), (.deferred, "deferred (bypass)"), (.removed, "removed")]
        for (i, (st, label)) in legend.enumerated() {
            let x = gap + i * 130, y = top + panelH + 24
            s += "<rect x=\"\(x)\" y=\"\(y)\" width=\"11\" height=\"11\" fill=\"\(colors[st]!)\"/><text x=\"\(x + 16)\" y=\"\(y + 10)\">\(label)</text>\n"
        }
        s += "</svg>\n"
        try Data(s.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
