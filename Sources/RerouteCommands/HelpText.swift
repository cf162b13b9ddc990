import Foundation

/// Help text as written in the source (hard-wrapped near 100 columns) made into the logical
/// lines ArgumentParser wraps to the terminal's width itself: without this, each source line
/// wraps on its own and the text comes out ragged.
enum HelpText {
    /// Joins the lines of each paragraph (blank lines separate paragraphs) into one line, except
    /// that a line starting a list item (`1.`, `4b.`, `-`) starts a new line; an item's indented
    /// continuation lines join the item.
    static func reflowed(_ text: String) -> String {
        var lines: [String] = []
        var startsNew = true
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty {
                lines.append("")
                startsNew = true
            } else if startsNew || isListItem(line) {
                lines.append(line)
                startsNew = false
            } else {
                lines[lines.count - 1] += " " + line
            }
        }
        return lines.joined(separator: "\n")
    }

    private static func isListItem(_ line: String) -> Bool {
        line.hasPrefix("- ") || line.range(of: #"^[0-9]+[a-z]?\. "#, options: .regularExpression) != nil
    }
}
