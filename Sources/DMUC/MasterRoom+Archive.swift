import XMPPCore

extension MasterRoom {
    /// Who may read the room's archive (XEP-0313 §5: no more than may join and read along).
    /// Outcasts never; members-only rooms their members and up; password-protected and hidden
    /// rooms those affiliated with it or present in it; anyone else in an open, public room.
    /// Returns the error to send, or nil when the query may run.
    public func archiveRefusal(for from: JID) -> MAMQuery.Refusal? {
        let affiliation = affiliation(of: from)
        let present = occupantKey(realJID: from, node: .local) != nil
        if !archives {
            return MAMQuery.Refusal(type: "cancel", condition: "feature-not-implemented", text: "this room keeps no archive")
        }
        if affiliation == "outcast" {
            return MAMQuery.Refusal(type: "auth", condition: "forbidden", text: "you are banned from this room")
        }
        if locked && affiliation != "owner" {
            return MAMQuery.Refusal(type: "cancel", condition: "item-not-found", text: "this room is not configured yet")
        }
        if config.membersOnly && Self.rank(affiliation) < Self.rank("member") {
            return MAMQuery.Refusal(type: "auth", condition: "registration-required", text: "the archive of a members-only room is for its members")
        }
        if (config.password != nil || !config.isPublic) && affiliation == "none" && !present {
            return MAMQuery.Refusal(type: "auth", condition: "forbidden", text: "join the room to read its archive")
        }
        return nil
    }
}
