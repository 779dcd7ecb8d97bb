/// IRCv3 `draft/multiline` (ircv3.net/specs/extensions/multiline): a message of several lines
/// sent as one BATCH, so receivers that understand it show one message, and the rest see the
/// lines as before.
public struct IRCMultiline: Sendable, Hashable {
    /// Total bytes of message text one batch may carry (the lines' texts plus a line break
    /// between each).
    public var maximumBytes: Int
    /// Lines one batch may carry, when the server says.
    public var maximumLines: Int?

    public init(maximumBytes: Int, maximumLines: Int? = nil) {
        self.maximumBytes = maximumBytes
        self.maximumLines = maximumLines
    }

    /// From the capability's value, `max-bytes=4096,max-lines=24`; nil without max-bytes,
    /// which the specification makes mandatory.
    public init?(capabilityValue: String) {
        var bytes: Int?
        var lines: Int?
        for item in capabilityValue.split(separator: ",") {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let value = Int(pair[1]), value > 0 else { continue }
            switch pair[0] {
            case "max-bytes": bytes = value
            case "max-lines": lines = value
            default: break
            }
        }
        guard let bytes else { return nil }
        self.init(maximumBytes: bytes, maximumLines: lines)
    }

    /// The PRIVMSGs for `pieces` (from `IRCLineSplitter.pieces`) to `target`: one plain PRIVMSG
    /// for a single piece; otherwise BATCH +ref, each piece tagged with the batch (and
    /// `draft/multiline-concat` where it continues the previous one), BATCH -ref, as many
    /// batches as the limits need. `reference` makes a fresh batch reference each call.
    public func messages(target: String, pieces: [(text: String, continues: Bool)], reference: () -> String) -> [IRCMessage] {
        guard pieces.count > 1 else { return pieces.map { IRCMessage(command: "PRIVMSG", target, $0.text) } }
        var groups: [[(text: String, continues: Bool)]] = [[]]
        var bytes = 0
        for piece in pieces {
            let size = piece.text.utf8.count + (groups[groups.count - 1].isEmpty ? 0 : 1)
            let full = !groups[groups.count - 1].isEmpty
                && (bytes + size > maximumBytes || groups[groups.count - 1].count == (maximumLines ?? .max))
            if full {
                groups.append([])
                bytes = 0
            }
            // A batch never starts with a continuation: concat joins to a line in the same batch.
            groups[groups.count - 1].append((piece.text, full ? false : piece.continues))
            bytes += piece.text.utf8.count + (groups[groups.count - 1].count > 1 ? 1 : 0)
        }
        var messages: [IRCMessage] = []
        for group in groups {
            guard group.count > 1 else {
                messages += group.map { IRCMessage(command: "PRIVMSG", target, $0.text) }
                continue
            }
            let ref = reference()
            messages.append(IRCMessage(command: "BATCH", "+\(ref)", "draft/multiline", target))
            for piece in group {
                var tags: [(key: String, value: String)] = [("batch", ref)]
                if piece.continues { tags.append(("draft/multiline-concat", "")) }
                messages.append(IRCMessage(tags: tags, command: "PRIVMSG", [target, piece.text]))
            }
            messages.append(IRCMessage(command: "BATCH", "-\(ref)"))
        }
        return messages
    }
}
