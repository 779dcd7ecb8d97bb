import Metrics

/// What the bridge counts (issue 7), through swift-metrics: the process decides where it goes.
/// Created after the metrics system is bootstrapped (a metric binds to the factory it is made with).
struct BridgeMetrics: Sendable {
    let messagesIRCToXMPP = Counter(label: "shadowbridge_messages_total", dimensions: [("direction", "irc_to_xmpp")])
    let messagesXMPPToIRC = Counter(label: "shadowbridge_messages_total", dimensions: [("direction", "xmpp_to_irc")])
    let presenceIRCToXMPP = Counter(label: "shadowbridge_presence_events_total", dimensions: [("direction", "irc_to_xmpp")])
    let presenceXMPPToIRC = Counter(label: "shadowbridge_presence_events_total", dimensions: [("direction", "xmpp_to_irc")])
    let puppetConnections = Gauge(label: "shadowbridge_puppet_connections")
    let relayedOccupants = Gauge(label: "shadowbridge_relayed_occupants")
    let ircReconnects = Counter(label: "shadowbridge_reconnects_total", dimensions: [("kind", "irc")])
    let xmppReconnects = Counter(label: "shadowbridge_reconnects_total", dimensions: [("kind", "xmpp_bridge")])
    let seqGaps = Counter(label: "shadowbridge_link_seq_gaps_total")
    let duplicatesDropped = Counter(label: "shadowbridge_link_duplicates_dropped_total")
    let resyncs = Counter(label: "shadowbridge_link_resyncs_total")
    let splits = Counter(label: "shadowbridge_link_splits_total")
    let refusedByRoom = Counter(label: "shadowbridge_errors_total", dimensions: [("kind", "irc_user_refused")])
    let ircConnectFailures = Counter(label: "shadowbridge_errors_total", dimensions: [("kind", "irc_connect_failed")])
    let federationFailures = Counter(label: "shadowbridge_errors_total", dimensions: [("kind", "federation_failed")])
    let reloads = Counter(label: "shadowbridge_reloads_total", dimensions: [("result", "applied")])
    let reloadFailures = Counter(label: "shadowbridge_reloads_total", dimensions: [("result", "refused")])
    let notRelayed = Counter(label: "shadowbridge_errors_total", dimensions: [("kind", "line_not_relayed")])
    let stateWriteFailures = Counter(label: "shadowbridge_errors_total", dimensions: [("kind", "state_not_written")])
}
