import DMUC
import Foundation
import Logging
import Store
import XMPPCore

/// Persistence and the room archive: what of each room outlives the process, written in
/// batches so that no relayed stanza waits for the disk, and MAM (XEP-0313) over the archive.
extension MasterService {
    /// How long changes wait to be written together.
    static let writeDelay: Duration = .milliseconds(100)

    // MARK: - Writing

    /// Notes what changed in a room after a stanza: its snapshot when a stored room changed,
    /// its removal, the messages to archive. Written by the next flush.
    func persist(_ jid: JID, archived: [MasterRoom.ArchivedMessage] = []) {
        let key = jid.description
        for message in archived {
            pending.archived.append(MasterStore.Message(room: key, id: message.id, date: message.date, nick: message.nick, stanza: message.message.serialized(parentNamespace: NS.component)))
        }
        if let room = rooms[jid] {
            if room.isStored {
                if stored[jid] != room.stateVersion, let record = Self.record(jid, room.snapshot) {
                    pending.saved.removeAll { $0.jid == key }
                    pending.unstored.removeAll { $0 == key }
                    pending.saved.append(record)
                    stored[jid] = room.stateVersion
                }
            } else if stored.removeValue(forKey: jid) != nil {
                pending.saved.removeAll { $0.jid == key }
                pending.unstored.append(key)
            }
        } else {
            stored[jid] = nil
            pending.saved.removeAll { $0.jid == key }
            pending.forgotten.append(key)
        }
        scheduleFlush()
    }

    private func scheduleFlush() {
        guard !pending.isEmpty, !flushScheduled else { return }
        flushScheduled = true
        Task {
            try? await Task.sleep(for: Self.writeDelay)
            await self.flush()
        }
    }

    /// Writes what is pending, after every earlier write; returns when it is on disk.
    func flush() async {
        flushScheduled = false
        guard !pending.isEmpty else {
            await lastWrite?.value
            return
        }
        let batch = pending
        pending = MasterStore.Batch()
        let previous = lastWrite
        let store = store
        let logger = logger
        let failed = storeFailed
        let write = Task {
            await previous?.value
            do {
                try await store.write(batch)
            } catch {
                // The stanzas were delivered; only their archive copy (or a room change) is lost.
                failed.increment()
                logger.error(
                    "state not written", metadata: ["error": "\(error)", "messages": "\(batch.archived.count)", "rooms": "\(batch.saved.count)"])
            }
        }
        lastWrite = write
        await write.value
    }

    /// Deletes archived messages older than `archive_retention_days`, at start and then hourly;
    /// returns at once when the archive is kept forever (0).
    func retention() async {
        guard configuration.archiveRetentionDays > 0 else { return }
        while !Task.isCancelled {
            let cutoff = Date().addingTimeInterval(-Double(configuration.archiveRetentionDays) * 86_400)
            do {
                let removed = try await store.prune(before: cutoff)
                if removed > 0 { logger.info("archive retention", metadata: ["removed": "\(removed)", "days": "\(configuration.archiveRetentionDays)"]) }
            } catch {
                logger.error("archive retention failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .seconds(3600))
        }
    }

    // MARK: - Records

    static func record(_ jid: JID, _ snapshot: MasterRoom.Snapshot) -> MasterStore.Room? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let affiliations = Dictionary(uniqueKeysWithValues: snapshot.affiliations.map { ($0.key.description, $0.value) })
        guard let config = try? encoder.encode(snapshot.config), let affiliationData = try? encoder.encode(affiliations) else { return nil }
        return MasterStore.Room(
            jid: jid.description, rid: snapshot.rid, config: config, affiliations: affiliationData, subject: snapshot.subject,
            subjectNick: snapshot.subjectNick, secret: Data(snapshot.occupantIDKey))
    }

    static func snapshot(_ record: MasterStore.Room) -> MasterRoom.Snapshot? {
        let decoder = JSONDecoder()
        guard let config = try? decoder.decode(RoomConfig.self, from: record.config),
            let raw = try? decoder.decode([String: String].self, from: record.affiliations), record.secret.count >= 16
        else { return nil }
        var affiliations: [JID: String] = [:]
        for (jid, affiliation) in raw {
            guard let jid = JID(jid) else { return nil }
            affiliations[jid.bare] = affiliation
        }
        return MasterRoom.Snapshot(
            rid: record.rid, config: config, affiliations: affiliations, subject: record.subject, subjectNick: record.subjectNick,
            occupantIDKey: Array(record.secret))
    }

    static func archivedMessage(_ message: MasterStore.Message) -> MasterRoom.ArchivedMessage? {
        guard let element = try? XMLElement(parsing: message.stanza, namespace: NS.component) else { return nil }
        return MasterRoom.ArchivedMessage(id: message.id, date: message.date, nick: message.nick, message: element)
    }

    // MARK: - MAM

    /// XEP-0313 on the room's JID: the form (get), or a query (set) answered from the archive
    /// after every pending write has landed, so a line just said is in the answer.
    func answerArchiveQuery(_ stanza: XMLElement, query: XMLElement, room: MasterRoom, from: JID) {
        if let refusal = room.archiveRefusal(for: from) {
            session.send(stanza.errorReply(type: refusal.type, condition: refusal.condition, text: refusal.text))
            return
        }
        if stanza["type"] == "get" {
            session.send(stanza.iqResult(XMLElement("query", namespace: NS.mam, children: [.element(MAMQuery.form.element)])))
            return
        }
        guard stanza["type"] == "set" else { return }
        let request: MAMQuery
        do {
            request = try MAMQuery(query, archive: room.jid)
        } catch {
            session.send(stanza.errorReply(type: error.type, condition: error.condition, text: error.text))
            return
        }
        let roomJID = room.jid
        Task { await self.runArchiveQuery(stanza, request: request, room: roomJID, from: from) }
    }

    private func runArchiveQuery(_ stanza: XMLElement, request: MAMQuery, room: JID, from: JID) async {
        await flush()
        let filter = MasterStore.Filter(
            room: room.description, nick: request.withNick, start: request.start, end: request.end, afterID: request.afterID,
            beforeID: request.beforeID, ids: request.ids)
        let (after, before, fromEnd): (String?, String?, Bool) = switch request.page {
        case .after(let id): (id, nil, false)
        case .before(let id): (nil, id, id == nil)
        }
        do {
            let page = try await store.page(filter, after: after, before: before, fromEnd: fromEnd, max: request.max)
            var replies: [XMLElement] = []
            let messages = request.flipPage ? page.messages.reversed() : page.messages
            for message in messages {
                guard let element = try? XMLElement(parsing: message.stanza, namespace: NS.component) else {
                    logger.error("archived message unreadable; skipped", metadata: ["room": "\(room)", "id": "\(message.id)"])
                    continue
                }
                replies.append(request.result(from: room, to: from, id: message.id, date: message.date, message: element))
            }
            replies.append(MAMQuery.fin(stanza, first: page.messages.first?.id, last: page.messages.last?.id, count: page.count, complete: page.complete))
            session.send(replies)
        } catch MasterStore.Failure.unknownID(let id) {
            session.send(stanza.errorReply(type: "cancel", condition: "item-not-found", text: "\(id) is not in this room's archive"))
        } catch {
            logger.error("archive query failed", metadata: ["room": "\(room)", "error": "\(error)"])
            session.send(stanza.errorReply(type: "wait", condition: "internal-server-error", text: "the archive could not be read"))
        }
    }
}
