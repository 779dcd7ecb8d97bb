import Foundation
import XMPPCore

/// How fast one sender may go: `burst` stanzas at once, then `perSecond` (a token bucket).
public struct RateLimit: Sendable, Hashable {
    public var perSecond: Double
    public var burst: Double

    public init(perSecond: Double, burst: Int) {
        precondition(perSecond > 0 && burst >= 1)
        self.perSecond = perSecond
        self.burst = Double(burst)
    }
}

/// One token bucket per sender, under one limit. Time comes in with each call, so a room stays
/// a pure state machine. Senders whose bucket has refilled are forgotten now and then, so the
/// table does not grow with everyone who ever spoke.
struct RateBuckets: Sendable {
    let limit: RateLimit
    private struct Bucket {
        var tokens: Double
        var last: Date
    }
    private var buckets: [JID: Bucket] = [:]
    /// Pruning walks the table: done when it has doubled since the last time.
    private var pruneAbove = 1024

    init(_ limit: RateLimit) {
        self.limit = limit
    }

    /// Takes a token for `sender` at `now` if one is there.
    mutating func take(_ sender: JID, now: Date) -> Bool {
        if buckets.count > pruneAbove {
            prune(now: now)
            pruneAbove = max(1024, buckets.count * 2)
        }
        var bucket = buckets[sender].map { refilled($0, now: now) } ?? Bucket(tokens: limit.burst, last: now)
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        buckets[sender] = bucket
        return allowed
    }

    private func refilled(_ bucket: Bucket, now: Date) -> Bucket {
        Bucket(tokens: min(limit.burst, bucket.tokens + max(0, now.timeIntervalSince(bucket.last)) * limit.perSecond), last: now)
    }

    private mutating func prune(now: Date) {
        buckets = buckets.filter { refilled($0.value, now: now).tokens < limit.burst }
    }
}
