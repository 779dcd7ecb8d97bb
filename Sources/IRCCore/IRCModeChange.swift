/// One change in a channel MODE line (`+o-v alice bob`), read with the server's ISUPPORT:
/// PREFIX modes and CHANMODES types A and B take an argument both ways, type C only when set,
/// type D never (modern.ircdocs.horse/#chanmodes-parameter).
public struct IRCModeChange: Sendable, Hashable {
    public var adding: Bool
    public var mode: Character
    public var argument: String?

    public init(adding: Bool, mode: Character, argument: String?) {
        self.adding = adding
        self.mode = mode
        self.argument = argument
    }

    /// Parses `modes` followed by its `arguments`; a mode missing its argument is dropped.
    public static func parse(_ modes: String, arguments: [String], isupport: ISupport) -> [IRCModeChange] {
        let prefixModes = Set(isupport.prefixes.map(\.mode))
        let types = (isupport.tokens["CHANMODES"] ?? "beI,k,l,imnpst").split(separator: ",", omittingEmptySubsequences: false).map(Set.init)
        let always = prefixModes.union(types.count > 0 ? types[0] : []).union(types.count > 1 ? types[1] : [])
        let whenSet = types.count > 2 ? types[2] : []
        var changes: [IRCModeChange] = []
        var adding = true
        var next = arguments.makeIterator()
        for mode in modes {
            switch mode {
            case "+": adding = true
            case "-": adding = false
            default:
                if always.contains(mode) || (adding && whenSet.contains(mode)) {
                    guard let argument = next.next() else { continue }
                    changes.append(IRCModeChange(adding: adding, mode: mode, argument: argument))
                } else {
                    changes.append(IRCModeChange(adding: adding, mode: mode, argument: nil))
                }
            }
        }
        return changes
    }
}
