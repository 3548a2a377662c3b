// EarlyParts: a large file's parts go to the server while the application is still writing it.
//
// Once a file being written grows past the multipart threshold, a multipart upload is begun
// for its key and every part the writes have filled is sent at once (streamed from the staging
// file), so that when the file is closed and its upload runs, only the parts after them are
// left to send. Nothing is visible on the server before the upload completes, and it completes
// only for a version a close sealed (Write/WriteBack.swift): an object is never replaced by a
// prefix of a file.
//
// A writer no faster than parts are sent gets them sent `uploadConcurrency` at a time beside
// it. One writing faster (`cp` of a file in the page cache) gets one part at a time: on a 2-core
// machine with the server on loopback, four parts beside a 1 GiB `dd` took it from 736 to
// 267 MB/s to close (30b6333); sending none before its close gave ~1,000 MB/s to close and
// 240–280 until stored, one at a time 800–880 and 260–320 (2026-12-06). The writer's pace is
// known once it has written a part past the threshold; the parts' is measured on this mount's
// uploads (64 MB/s until one is). A writer that slows down gets the next parts sent four at a
// time. The upload begins with its first part: a file too small to send one costs no request.
//
// Parts go early only while they do not slow the writer down (`WriterPace`): for a writer
// faster than the parts, its pace with parts in flight is compared with its pace alone, every
// two parts' worth of writing, and once it fell below `WriterPace.yieldBelow` of that twice in
// a row, the rest waits for the close. With the server on this machine the parts take the
// writer's CPU and memory bandwidth: a 1 GiB `dd` went to close at 266-950 MB/s with parts one
// at a time beside it, 765-1,228 with none, and was stored no sooner (2026-12-07, local S3
// server, 5 runs each); with this rule 880-1,245 to close, 223-327 until stored. Through a
// link, where a part costs the writer little, they keep going (256 MiB through the 20 ms
// proxy: stored at 250-295 MB/s with them, 244-260 without).
//
// The parts are used only if they still hold the file's bytes: a write or a truncate below
// what they cover (`covered`), a failed part, or a key that changed (a rename) makes them
// unusable, and the upload is aborted. The upload is in the journal (`began`, `ended`) from
// before its first part until it is completed or aborted: a mount that adopts the journal of a
// killed one aborts what it left.

import ObjectStorage

/// How many parts may go beside a writer, from its pace: a pure state machine (sizes and
/// instants in, a limit out).
///
/// None until the writer's pace alone is known (once the file has grown by a part past the
/// threshold). Then `concurrency` while it writes no faster than parts are sent, one while it
/// writes faster. For a writer faster than the parts alone, every two parts' worth of writing
/// its pace over them (parts beside it) is compared with its pace alone: below `yieldBelow` of
/// it twice in a row (once may be a pause of the writer's own), the parts were taking what the
/// writer needs, and none goes early any more (`yielded`).
struct WriterPace {
    /// A writer whose pace with parts beside it fell below this share of its pace alone stops
    /// having parts sent early.
    static let yieldBelow = 0.7

    let partSize: Int64
    /// Where the current measurement began: the threshold, then each window's start.
    private var mark: (size: Int64, at: ContinuousClock.Instant)
    /// Bytes per second over the first part written past the threshold, nothing beside it.
    private(set) var alone: Double?
    /// The pace over the last window measured (the pace alone until one was).
    private var latest: Double = 0
    /// Windows in a row measured below `yieldBelow` of the pace alone.
    private var slowWindows = 0
    private(set) var yielded = false

    init(partSize: Int64, size: Int64, at instant: ContinuousClock.Instant) {
        self.partSize = partSize
        self.mark = (size, instant)
    }

    /// The parts that may be in flight now, with the file at `size`.
    mutating func limit(size: Int64, at now: ContinuousClock.Instant, partRate: Double, concurrency: Int) -> Int {
        if yielded { return 0 }
        guard let alone else {
            guard size >= mark.size + partSize else { return 0 }
            let rate = Self.rate(from: mark, to: (size, now))
            self.alone = rate
            latest = rate
            mark = (size, now)
            return rate <= partRate ? max(1, concurrency) : 1
        }
        if size >= mark.size + 2 * partSize {
            let rate = Self.rate(from: mark, to: (size, now))
            latest = rate
            mark = (size, now)
            // Only a writer faster than the parts alone: a slower one's pace is its own (an
            // application's pauses), and what its parts send beside it is all gained.
            slowWindows = alone > partRate && rate < alone * Self.yieldBelow ? slowWindows + 1 : 0
            if slowWindows >= 2 {
                yielded = true
                return 0
            }
        }
        return latest <= partRate ? max(1, concurrency) : 1
    }

    private static func rate(
        from a: (size: Int64, at: ContinuousClock.Instant), to b: (size: Int64, at: ContinuousClock.Instant)
    ) -> Double {
        Double(b.size - a.size) / max((b.at - a.at).seconds, 1e-6)
    }
}

extension Duration {
    /// In seconds, as a Double: for rates.
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}

/// The early parts of one staging file. ObjectFS actor only (`abandon` excepted, which only
/// hands the upload to the actor).
final class EarlyParts: @unchecked Sendable {
    let key: ObjectKey
    let partSize: Int64
    /// What the upload was begun with: the object's metadata is the file's as it was then, and
    /// is stored again after the upload if it changed (Write/Upload.swift).
    let options: PutOptions
    var upload: MultipartUpload?
    /// Parts sent, in any order.
    var parts: [UploadedPart] = []
    /// Parts begun (numbers 1...started), and those of them still being sent.
    var started = 0
    var running = 0
    var creating = false
    /// A write or truncate below `covered`, or a failure: the parts are not used.
    var broken = false
    /// Completed or aborted.
    var ended = false
    /// Waiting for the parts in flight to end.
    var waiters: [CheckedContinuation<Void, Never>] = []
    /// Aborts an upload nobody completed (the staging file went).
    let onAbandon: @Sendable (MultipartUpload) -> Void
    /// The writer's pace since the file passed the threshold, alone and with parts beside it.
    var pace: WriterPace

    init(
        key: ObjectKey, partSize: Int64, options: PutOptions, size: Int64,
        onAbandon: @escaping @Sendable (MultipartUpload) -> Void
    ) {
        self.key = key
        self.partSize = partSize
        self.options = options
        self.pace = WriterPace(partSize: partSize, size: size, at: .now)
        self.onAbandon = onAbandon
    }

    /// Bytes the parts begun cover, from the start of the file.
    var covered: Int64 { Int64(started) * partSize }

    /// The staging file is gone: an upload begun for it and not ended is aborted.
    func abandon() {
        guard !ended, let upload else { return }
        ended = true
        onAbandon(upload)
    }
}

extension ObjectFS {
    /// After a write to `staging` (the file `node` is writing): begins the upload once the file
    /// is past the multipart threshold, and sends every part the writes have filled.
    func sendFilledParts(_ node: Node, _ staging: StagingFile) {
        guard configuration.sendsPartsEarly, staging.onDisk, staging.storedPrefix == 0, node.parent != nil,
            staging.size > configuration.multipartThreshold, staging !== node.sealed
        else { return }
        let early: EarlyParts
        if let existing = staging.early {
            early = existing
        } else {
            var options = putOptions(node)
            options.isNew = node.remote == nil && !node.recovered
            early = EarlyParts(
                key: fileKey(node), partSize: max(configuration.partSize, storage.capabilities.minimumPartSize),
                options: options, size: staging.size,
                onAbandon: { [weak self] upload in
                    guard let self else { return }
                    Task { await self.abortEarlyUpload(upload) }
                })
            staging.early = early
        }
        guard !early.broken, !early.ended, !early.creating,
            staging.size >= early.covered + early.partSize, earlyPartLimit(early, staging) > 0
        else { return }
        guard let upload = early.upload else {
            early.creating = true
            Task { await self.beginEarlyUpload(early, of: node.ino, staging) }
            return
        }
        while early.running < earlyPartLimit(early, staging), early.started < storage.capabilities.maximumPartCount,
            staging.size >= early.covered + early.partSize
        {
            early.started += 1
            early.running += 1
            let number = early.started
            let payload = staging.payload(offset: early.covered - early.partSize, length: early.partSize)
            Task { await self.sendEarlyPart(early, upload, number: number, payload: payload, of: node.ino, staging) }
        }
    }

    /// How many parts may be in flight beside the writer now (`WriterPace.limit`).
    private func earlyPartLimit(_ early: EarlyParts, _ staging: StagingFile) -> Int {
        early.pace.limit(
            size: staging.size, at: .now, partRate: partRate ?? Self.assumedPartRate,
            concurrency: configuration.uploadConcurrency)
    }

    /// The rate a part is assumed to go at until one was measured: 64 MB/s.
    static let assumedPartRate: Double = 64e6

    /// Sends one part (streamed from its file) and notes the rate parts go at: the mount's,
    /// over all the parts in flight together, as a moving average. Parts sent side by side share
    /// the link: one of four that took 0.4 s for 1 MiB went at 10 MB/s, the parts at 40. (The
    /// rate of one part alone, after a file's close sent its parts 4 at a time, had a slow
    /// machine take a 10 MB/s writer for one faster than its parts.)
    func sendPart(_ upload: MultipartUpload, number: Int, payload: Payload) async throws -> UploadedPart {
        partsInFlight += 1
        let alongside = partsInFlight
        defer { partsInFlight -= 1 }
        let started = ContinuousClock.now
        let part = try await storage.uploadPart(upload, number: number, payload: payload)
        let seconds = (ContinuousClock.now - started).seconds
        if payload.length > 0, seconds > 0 {
            let rate = Double(payload.length) * Double(alongside) / seconds
            partRate = partRate.map { $0 * 0.7 + rate * 0.3 } ?? rate
        }
        return part
    }

    private func beginEarlyUpload(_ early: EarlyParts, of ino: InodeNumber, _ staging: StagingFile) async {
        do {
            let upload = try await storage.createMultipartUpload(early.key, options: early.options)
            early.upload = upload
            // In the journal before any part is sent: a crash from here on leaves nothing behind.
            if let journal {
                try journal.append(.began(upload))
                countJournalRecord()
                try await syncJournalRecords()
            }
        } catch {
            configuration.log("cannot send the parts of \(early.key) while it is written: \(error)")
            early.broken = true
            if let upload = early.upload, !early.ended {
                // Begun, but not recorded: it goes now.
                early.ended = true
                await abortEarlyUpload(upload)
            }
        }
        early.creating = false
        wakeEarlyWaiters(early)
        if let node = nodes[ino], node.staging === staging { sendFilledParts(node, staging) }
    }

    private func sendEarlyPart(
        _ early: EarlyParts, _ upload: MultipartUpload, number: Int, payload: Payload, of ino: InodeNumber,
        _ staging: StagingFile
    ) async {
        let inFlight = Self.streamingFootprint(payload)
        await budget.reserve(inFlight)
        do {
            early.parts.append(try await sendPart(upload, number: number, payload: payload))
            staging.sent += payload.length
        } catch {
            early.broken = true
        }
        budget.release(inFlight)
        early.running -= 1
        wakeEarlyWaiters(early)
        if let node = nodes[ino], node.staging === staging { sendFilledParts(node, staging) }
    }

    private func wakeEarlyWaiters(_ early: EarlyParts) {
        guard early.running == 0, !early.creating else { return }
        let waiters = early.waiters
        early.waiters = []
        for w in waiters { w.resume() }
    }

    /// The parts sent early for `staging`, once none is in flight, if they can be used for its
    /// upload under `key`; otherwise their upload is aborted and nil returned.
    func earlyParts(of staging: StagingFile, for key: ObjectKey) async -> EarlyParts? {
        guard let early = staging.early, !early.ended else { return nil }
        guard early.upload != nil || early.creating else {
            staging.early = nil  // none was sent
            return nil
        }
        while early.running > 0 || early.creating {
            await withCheckedContinuation { c in
                // Looked at again where it queues (see `lock`).
                if early.running > 0 || early.creating { early.waiters.append(c) } else { c.resume() }
            }
        }
        let caps = storage.capabilities
        let rest = (staging.size - early.covered + early.partSize - 1) / early.partSize
        if !early.broken, early.upload != nil, early.key == key, staging.storedPrefix == 0, early.started > 0,
            early.parts.count == early.started, Int64(early.started) + rest <= Int64(caps.maximumPartCount)
        {
            return early
        }
        await dropEarlyParts(of: staging)
        return nil
    }

    /// Aborts the upload of `staging`'s early parts, if it has one that has not ended.
    func dropEarlyParts(of staging: StagingFile) async {
        guard let early = staging.early else { return }
        staging.early = nil
        guard !early.ended, let upload = early.upload else { return }
        early.ended = true
        await abortEarlyUpload(upload)
    }

    /// The early upload has ended (completed): recorded, so that no later mount aborts it.
    func endEarlyUpload(_ early: EarlyParts) {
        early.ended = true
        guard let journal, let upload = early.upload else { return }
        do {
            try journal.append(.ended(uploadID: upload.uploadID))
            countJournalRecord()
        } catch {
            configuration.log(error.message)
        }
    }

    func abortEarlyUpload(_ upload: MultipartUpload) async {
        do {
            try await storage.abortMultipartUpload(upload)
        } catch StorageError.notFound {
            // Completed or aborted already.
        } catch {
            // Stays in the journal: the next mount that adopts it tries again.
            configuration.log("cannot abort the upload of \(upload.key) begun while it was written: \(error)")
            return
        }
        guard let journal, journal.openUploads[upload.uploadID] != nil else { return }
        do {
            try journal.append(.ended(uploadID: upload.uploadID))
            countJournalRecord()
        } catch {
            configuration.log(error.message)
        }
    }
}
