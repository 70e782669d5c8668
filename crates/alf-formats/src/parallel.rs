//! One large object on every core: the decompressed stream is cut into blocks at line
//! boundaries, a pool of workers parses and serializes the blocks, and the caller gets
//! the serialized blocks back in object order.
//!
//! Why blocks and not records: handing each record to a thread costs more than parsing
//! it. A block of about [`DEFAULT_BLOCK_BYTES`] holds hundreds of records, so the
//! hand-off is amortised and each worker runs the ordinary sequential parser
//! ([`crate::formats::parse`]) over its block.
//!
//! The output is byte-for-byte that of the sequential path: every block is parsed with
//! an [`ObjectParse`] resumed at the block's first line number and byte offset, so event
//! ids, `log.offset` and the line numbers of malformed records do not change. The only
//! state a line format carries from one line to the next is its header (CloudFront's
//! `#Fields:`); the last `#Fields:` line seen is replayed in front of every later block, and
//! subtracted from the counts. Formats whose state is harder to replay (VPC flow logs
//! infer their layout from a header that looks like data; CloudTrail and GuardDuty are
//! JSON documents) are parsed by one thread, through the same interface.
//!
//! Memory stays bounded: at most `2 x threads` blocks are read ahead or waiting to be
//! delivered, and a line longer than [`MAX_LINE`] is cut (as the sequential path cuts it)
//! before it is queued.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::driver::{EventSink, MAX_LINE, ObjectParse, ParseError, ParseStats, Stop};
use crate::registry::Reader;
use crate::{Enricher, Event, Format, ObjectInfo, ParseOptions, Redactor};

/// Decompressed bytes per block: large enough that the hand-off between threads is
/// noise (several hundred records), small enough that `2 x threads` of them in flight
/// stay a few megabytes, and that a block's serialized events (four times its size for
/// CloudFront) stay in a core's cache until the calling thread takes them: with 1 MiB
/// blocks, two threads spent 5% more CPU and ran at 1.69x one thread, against 1.79x
/// with 256 KiB (crates/alf-bench/README.md, "Issue 8, sixth step").
pub const DEFAULT_BLOCK_BYTES: usize = 256 * 1024;

/// Decompressed bytes asked of the reader at a time: at least the daemon's and the
/// command line's decoded-stream buffer (256 KiB), so that their `BufReader` passes
/// the read through rather than copying.
const READ_BYTES: usize = 256 * 1024;

/// The serialized events of one block, in object order.
#[derive(Debug, Default)]
pub struct Block {
    /// One JSON event per line, each ending in `\n` (redacted when a redactor was given).
    pub ndjson: Vec<u8>,
    /// Events in `ndjson`.
    pub events: u64,
    /// The records of this block that could not be parsed: 1-based line number and
    /// reason, as [`EventSink::malformed`] reports them.
    pub malformed: Vec<(u64, String)>,
}

impl Block {
    /// Empties the block, keeping its buffers' memory for the next one.
    fn clear(&mut self) {
        self.ndjson.clear();
        self.events = 0;
        self.malformed.clear();
    }

    /// Appends one event as a line of NDJSON.
    fn push_event(&mut self, event: &Event, redactor: Option<&Redactor>) {
        event.write_json(&mut self.ndjson, redactor);
        self.ndjson.push(b'\n');
        self.events += 1;
    }
}

/// How a block-parallel parse runs.
#[derive(Debug, Clone, Copy)]
pub struct BlockOptions<'a> {
    /// Worker threads; 0 or 1 parses on the calling thread.
    pub threads: usize,
    /// Target decompressed bytes per block ([`DEFAULT_BLOCK_BYTES`]).
    pub block_bytes: usize,
    /// Applied to every string of every event, as [`Event::write_json`] does.
    pub redactor: Option<&'a Redactor>,
}

/// Whether `format` can be cut into blocks at line boundaries with the output of the
/// sequential parser: formats read line by line ([`Reader::Lines`] and
/// [`Reader::JsonLines`] in the registry), except VPC flow logs, whose header
/// detection is too involved to replay in front of a block. The others (JSON documents,
/// whole-object readers) are parsed by one thread.
pub fn splits_into_blocks(format: Format) -> bool {
    matches!(
        format.spec().reader,
        Reader::Lines(_) | Reader::JsonLines(_)
    ) && format != Format::VpcFlow
}

/// Whether a line is a header the format's parser keeps state from (replayed in front
/// of every later block). Exactly the lines CloudFront's parser reads as headers: those
/// starting with `#`, when not longer than [`MAX_LINE`] (an over-long line is a
/// malformed record whatever it starts with).
fn is_replayed_header(format: Format, line: &[u8]) -> bool {
    format == Format::CloudFront && line.first() == Some(&b'#') && line.len() <= MAX_LINE
}

/// Parses one object of `format` from `reader` and hands its events to `deliver` as
/// serialized blocks, in order. Returns the object's counts, equal to those of
/// [`crate::parse_object`].
///
/// `deliver` runs on the calling thread; returning `Err(Stop)` ends the parse with
/// [`ParseError::Stopped`] (the workers finish their current block and exit). It is
/// lent each block rather than given it: the block's buffer is then filled again,
/// where a new buffer for every block cost its growth by doubling and its page faults
/// (the copies alone were 5% of a two-thread parse).
pub fn parse_object_blocks(
    format: Format,
    reader: &mut dyn BufRead,
    object: &ObjectInfo,
    options: &ParseOptions,
    enricher: &Enricher,
    how: BlockOptions<'_>,
    deliver: &mut dyn FnMut(&Block) -> Result<(), Stop>,
) -> Result<ParseStats, ParseError> {
    let block_bytes = how.block_bytes.max(1);
    if how.threads <= 1 || !splits_into_blocks(format) {
        let mut sink = BlockSink::new(block_bytes, how.redactor, Some(deliver));
        let stats = crate::parse_object(format, reader, object, options, enricher, &mut sink)?;
        sink.flush()?;
        return Ok(stats);
    }
    let redactor = how.redactor.cloned();
    // The buffers of delivered blocks, for the next blocks the workers fill.
    let spare: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let workers_spare = Arc::clone(&spare);
    let new_sink = move || {
        let mut block = Block::default();
        match workers_spare.lock().ok().and_then(|mut spare| spare.pop()) {
            Some(ndjson) => block.ndjson = ndjson,
            None => block
                .ndjson
                .reserve(block_bytes.min(DEFAULT_BLOCK_BYTES) * 2),
        }
        BlockWriter {
            block,
            redactor: redactor.clone(),
        }
    };
    parse_object_blocks_into(
        format,
        reader,
        object,
        options,
        BlockPlan {
            threads: how.threads,
            block_bytes,
        },
        new_sink,
        &mut |writer: BlockWriter| {
            let mut block = writer.block;
            deliver(&block)?;
            block.clear();
            if let Ok(mut spare) = spare.lock()
                && spare.len() <= 2 * how.threads
            {
                spare.push(block.ndjson);
            }
            Ok(())
        },
    )
}

/// How many workers parse an object and how large its blocks are.
#[derive(Debug, Clone, Copy)]
pub struct BlockPlan {
    /// Worker threads (at least one is started).
    pub threads: usize,
    /// Target decompressed bytes per block ([`DEFAULT_BLOCK_BYTES`]).
    pub block_bytes: usize,
}

/// The general form of [`parse_object_blocks`], for callers that keep more than the
/// JSON of a block (the daemon routes, filters and numbers its events): every block is
/// parsed by a worker into a sink of its own, made by `new_sink`, and the filled sinks
/// are handed to `deliver` on the calling thread in object order. Always runs `threads`
/// workers (at least one), on threads of a pool that outlive the object (see `pool`),
/// which is why the sinks and their factory own what they use (`'static`); only for
/// formats that [`splits_into_blocks`] (others get an `InvalidInput` error: parse them
/// with [`crate::parse_object`]).
///
/// Each worker enriches with an [`Enricher`] of its own, kept by its thread from one
/// object to the next: one shared enricher's locks and the reference counts of its
/// shared strings, touched by every worker for every event, cost the 2-worker daemon
/// 15-23% more CPU than one thread (crates/alf-bench/E2E.md).
///
/// When reading the object fails, the blocks read before the failure, and the complete
/// lines after them, are still parsed and delivered before the error is returned, as
/// the sequential parser emits every record before the point where its input broke.
#[allow(clippy::too_many_arguments)]
pub fn parse_object_blocks_into<S, M>(
    format: Format,
    reader: &mut dyn BufRead,
    object: &ObjectInfo,
    options: &ParseOptions,
    plan: BlockPlan,
    new_sink: M,
    deliver: &mut dyn FnMut(S) -> Result<(), Stop>,
) -> Result<ParseStats, ParseError>
where
    S: EventSink + Send + 'static,
    M: Fn() -> S + Send + Sync + 'static,
{
    if !splits_into_blocks(format) {
        return Err(ParseError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{format} objects cannot be parsed in blocks"),
        )));
    }
    let threads = plan.threads.max(1);
    let (job_tx, job_rx) = mpsc::channel::<(u64, Job)>();
    let (done_tx, done_rx) = mpsc::channel::<Parsed<S>>();
    let work = Arc::new(Work {
        format,
        object: object.clone(),
        options: options.clone(),
        new_sink,
        jobs: Mutex::new(job_rx),
    });
    for _ in 0..threads {
        let (work, done_tx) = (Arc::clone(&work), done_tx.clone());
        pool::run(Box::new(move || work.run(&done_tx))).map_err(ParseError::Io)?;
    }
    drop(done_tx);
    let result = split_and_collect(
        format,
        reader,
        plan.block_bytes.max(1),
        threads,
        &job_tx,
        &done_rx,
        deliver,
    );
    // Closing the job queue ends the workers' part once they finish their block; their
    // threads go back to the pool.
    drop(job_tx);
    result
}

/// What the workers of one object share.
struct Work<M> {
    format: Format,
    object: ObjectInfo,
    options: ParseOptions,
    new_sink: M,
    /// The blocks to parse; the lock is held only to take the next one.
    jobs: Mutex<mpsc::Receiver<(u64, Job)>>,
}

thread_local! {
    /// A pool thread's enricher, kept from one object to the next with the thread.
    static WORKER_ENRICHER: Enricher = Enricher::new();
}

impl<M, S> Work<M>
where
    M: Fn() -> S,
    S: EventSink,
{
    /// A worker's part: parses blocks until the queue closes.
    fn run(&self, done: &mpsc::Sender<Parsed<S>>) {
        WORKER_ENRICHER.with(|enricher| {
            loop {
                let next = match self.jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok((seq, job)) = next else { return };
                // A panic must not leave the collector waiting for this block forever:
                // it becomes the object's error.
                let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let sink = (self.new_sink)();
                    parse_block(
                        self.format,
                        &job,
                        &self.object,
                        &self.options,
                        enricher,
                        sink,
                    )
                }))
                .unwrap_or_else(|_| {
                    Err(ParseError::Io(io::Error::other(
                        "parsing a block of the object panicked",
                    )))
                });
                // The block's buffer goes back to the splitter, to be read into again.
                if done.send((seq, parsed, job.data)).is_err() {
                    return;
                }
            }
        });
    }
}

/// Threads that outlive one object. A worker started for every object began it cold
/// (its allocator heap, the event plans of its thread, its enricher's caches): 21-22
/// ms more than a warm thread on 100,000 CloudFront records (`blocks-1-new-thread`
/// against `blocks-1-thread` in the `blocks` bench), paid by every worker on every
/// object. A pool thread runs one object's part at a time, then waits for the next.
mod pool {
    use std::io;
    use std::sync::{Mutex, mpsc};

    type Task = Box<dyn FnOnce() + Send>;

    /// The idle threads, each waiting for its next task on its own channel.
    static IDLE: Mutex<Vec<mpsc::Sender<Task>>> = Mutex::new(Vec::new());

    /// Idle threads kept; more (a burst of objects with many workers each) end.
    const MAX_IDLE: usize = 32;

    /// Runs `task` on an idle thread, or on a new one.
    pub(super) fn run(mut task: Task) -> io::Result<()> {
        while let Some(thread) = IDLE.lock().ok().and_then(|mut idle| idle.pop()) {
            match thread.send(task) {
                Ok(()) => return Ok(()),
                // That thread ended (a task of it panicked outside its guard).
                Err(mpsc::SendError(back)) => task = back,
            }
        }
        let (to_thread, tasks) = mpsc::channel::<Task>();
        let own = to_thread.clone();
        to_thread
            .send(task)
            .map_err(|_| io::Error::other("a new parsing thread could not be given its task"))?;
        std::thread::Builder::new()
            .name("alf-blocks".into())
            .spawn(move || {
                while let Ok(task) = tasks.recv() {
                    task();
                    match IDLE.lock() {
                        Ok(mut idle) if idle.len() < MAX_IDLE => idle.push(own.clone()),
                        _ => return,
                    }
                }
            })?;
        Ok(())
    }
}

/// One block for a worker.
struct Job {
    /// Header lines replayed first (their events, if any, do not exist: they are
    /// headers), then the block's lines.
    replay: Arc<Vec<u8>>,
    replay_lines: u64,
    data: Vec<u8>,
    /// 1-based line number of the block's first line, and its byte offset.
    first_line: u64,
    offset: u64,
    /// Bytes of an over-long last line that were not queued (counted as read).
    dropped: u64,
}

/// What a worker hands back.
type Done<S> = Result<(S, ParseStats), ParseError>;

/// A parsed block: its number, what the worker made of it, and its emptied input
/// buffer.
type Parsed<S> = (u64, Done<S>, Vec<u8>);

fn parse_block<S: EventSink>(
    format: Format,
    job: &Job,
    object: &ObjectInfo,
    options: &ParseOptions,
    enricher: &Enricher,
    mut sink: S,
) -> Done<S> {
    let mut cx = ObjectParse::new(format, object, options, enricher);
    let replay_bytes = job.replay.len() as u64;
    cx.resume_at(
        job.first_line.saturating_sub(1 + job.replay_lines),
        job.offset.saturating_sub(replay_bytes),
    );
    let mut input = io::Read::chain(&job.replay[..], &job.data[..]);
    crate::registry::parse(format, &mut input, &mut cx, &mut sink)?;
    let mut stats = cx.stats;
    stats.headers = stats.headers.saturating_sub(job.replay_lines);
    stats.bytes = stats.bytes.saturating_sub(replay_bytes) + job.dropped;
    Ok((sink, stats))
}

/// Reads blocks, queues them, and delivers the workers' results in order, with at most
/// `2 x threads` blocks queued or waiting.
fn split_and_collect<S>(
    format: Format,
    reader: &mut dyn BufRead,
    block_bytes: usize,
    threads: usize,
    jobs: &mpsc::Sender<(u64, Job)>,
    done: &mpsc::Receiver<Parsed<S>>,
    deliver: &mut dyn FnMut(S) -> Result<(), Stop>,
) -> Result<ParseStats, ParseError> {
    let max_in_flight = 2 * threads as u64;
    let mut splitter = Splitter::new(format, block_bytes);
    let mut total = ParseStats::default();
    let mut waiting: BTreeMap<u64, (S, ParseStats)> = BTreeMap::new();
    let (mut queued, mut delivered) = (0u64, 0u64);
    let mut finished = false;
    // A read error, returned once the blocks before it are delivered.
    let mut broken: Option<io::Error> = None;
    loop {
        // Deliver what is ready, in order.
        while let Some((sink, stats)) = waiting.remove(&delivered) {
            add_stats(&mut total, &stats);
            deliver(sink)?;
            delivered += 1;
        }
        if finished && delivered == queued {
            return match broken {
                Some(e) => Err(ParseError::Io(e)),
                None => Ok(total),
            };
        }
        if !finished && queued - delivered < max_in_flight {
            let next = match splitter.next_block(reader) {
                Ok(next) => next,
                Err(e) => {
                    broken = Some(e);
                    splitter.complete_lines_read()
                }
            };
            match next {
                Some(job) => {
                    jobs.send((queued, job)).map_err(|_| worker_gone())?;
                    queued += 1;
                }
                None => finished = true,
            }
            finished |= broken.is_some();
            // Take finished blocks without waiting, then read on.
            while let Ok((seq, result, buffer)) = done.try_recv() {
                splitter.recycle(buffer);
                waiting.insert(seq, result?);
            }
            continue;
        }
        let (seq, result, buffer) = done.recv().map_err(|_| worker_gone())?;
        splitter.recycle(buffer);
        waiting.insert(seq, result?);
    }
}

fn worker_gone() -> ParseError {
    ParseError::Io(io::Error::other("a parsing worker stopped unexpectedly"))
}

fn add_stats(total: &mut ParseStats, block: &ParseStats) {
    total.records += block.records;
    total.events += block.events;
    total.malformed += block.malformed;
    total.headers += block.headers;
    total.bytes += block.bytes;
}

/// Cuts the stream into blocks at line boundaries and remembers the header lines to
/// replay.
struct Splitter {
    format: Format,
    block_bytes: usize,
    /// `pending[..filled]`: bytes read that belong to the next block (they start at
    /// a line start). The bytes after them are initialized but hold nothing: they
    /// are read into next, without being zeroed again for every read.
    pending: Vec<u8>,
    filled: usize,
    /// Input buffers of parsed blocks, to read the next blocks into: a fresh buffer
    /// for every block, grown by doubling as it fills, cost the reading thread more
    /// in copies and page faults than inflating (about 15% of a two-thread parse).
    spare: Vec<Vec<u8>>,
    eof: bool,
    next_line: u64,
    next_offset: u64,
    replay: Arc<Vec<u8>>,
    replay_lines: u64,
}

impl Splitter {
    fn new(format: Format, block_bytes: usize) -> Self {
        Splitter {
            format,
            block_bytes,
            pending: Vec::new(),
            filled: 0,
            spare: Vec::new(),
            eof: false,
            next_line: 1,
            next_offset: 0,
            replay: Arc::new(Vec::new()),
            replay_lines: 0,
        }
    }

    /// Appends the reader's next bytes to `pending`; false at the end of input.
    ///
    /// Read straight into `pending` with a window of [`READ_BYTES`]: a `BufReader` of
    /// no more than that many bytes then hands the read to the decompressor instead of
    /// inflating into its own buffer and copying from there.
    fn read_more(&mut self, reader: &mut dyn BufRead) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pending.capacity() == 0 {
            self.pending = self.buffer();
        }
        // Smaller blocks (tests) read less at a time, so that they stay small.
        let end = self.filled + READ_BYTES.min(self.block_bytes.max(64));
        if self.pending.len() < end {
            self.pending.resize(end, 0);
        }
        let n = loop {
            match reader.read(&mut self.pending[self.filled..end]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.filled += n;
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// A buffer for a block, of which no byte is filled yet: a recycled one (its
    /// length, the bytes it has initialized, kept), or one large enough that reading a
    /// block into it never grows it.
    fn buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.block_bytes + READ_BYTES))
    }

    /// Takes back the input buffer of a parsed block. At most a few are kept (the
    /// blocks in flight are bounded, so are their buffers).
    fn recycle(&mut self, buffer: Vec<u8>) {
        if self.spare.len() < 4 && buffer.capacity() >= self.block_bytes {
            self.spare.push(buffer);
        }
    }

    fn next_block(&mut self, reader: &mut dyn BufRead) -> io::Result<Option<Job>> {
        while self.filled < self.block_bytes && self.read_more(reader)? {}
        let mut dropped = 0u64;
        let filled = std::mem::take(&mut self.filled);
        let data = match memchr::memrchr(b'\n', &self.pending[..filled]) {
            Some(last) => {
                let mut rest = self.buffer();
                let tail = &self.pending[last + 1..filled];
                if rest.len() < tail.len() {
                    rest.resize(tail.len(), 0);
                }
                rest[..tail.len()].copy_from_slice(tail);
                self.filled = tail.len();
                self.pending.truncate(last + 1);
                std::mem::replace(&mut self.pending, rest)
            }
            None if self.eof => {
                self.pending.truncate(filled);
                std::mem::take(&mut self.pending)
            }
            None => {
                // One line longer than a block: read to its end, keeping no more than
                // the sequential reader looks at (it reports the line as too long and
                // keeps its first MAX_LINE bytes), so memory stays bounded.
                let keep = MAX_LINE + 1;
                self.pending.truncate(filled);
                let mut line = std::mem::take(&mut self.pending);
                let mut scanned = 0;
                loop {
                    if let Some(end) = memchr::memchr(b'\n', &line[scanned..]) {
                        self.pending = line.split_off(scanned + end + 1);
                        line.pop();
                        if line.len() > keep {
                            dropped += (line.len() - keep) as u64;
                            line.truncate(keep);
                        }
                        line.push(b'\n');
                        break;
                    }
                    if line.len() > keep {
                        dropped += (line.len() - keep) as u64;
                        line.truncate(keep);
                    }
                    scanned = line.len();
                    if !self.read_more_into(reader, &mut line)? {
                        break;
                    }
                }
                self.filled = self.pending.len();
                line
            }
        };
        Ok(self.next_block_from_pending(data, dropped))
    }

    /// The job for `data`, the next lines of the object (`dropped`: bytes of an
    /// over-long last line not kept); `None` when empty.
    fn next_block_from_pending(&mut self, data: Vec<u8>, dropped: u64) -> Option<Job> {
        if data.is_empty() {
            return None;
        }
        let lines = memchr::memchr_iter(b'\n', &data).count() as u64
            + u64::from(data.last() != Some(&b'\n'));
        let job = Job {
            replay: Arc::clone(&self.replay),
            replay_lines: self.replay_lines,
            first_line: self.next_line,
            offset: self.next_offset,
            dropped,
            data,
        };
        self.next_line += lines;
        self.next_offset += job.data.len() as u64 + dropped;
        self.note_headers(&job.data);
        Some(job)
    }

    /// After a read error: the complete lines read but not yet queued, as a last block
    /// (a partial last line is lost with the rest of the input, as in the sequential
    /// reader).
    fn complete_lines_read(&mut self) -> Option<Job> {
        let last = memchr::memrchr(b'\n', &self.pending[..self.filled])?;
        self.pending.truncate(last + 1);
        self.filled = 0;
        self.eof = true;
        let data = std::mem::take(&mut self.pending);
        self.next_block_from_pending(data, 0)
    }

    fn read_more_into(&mut self, reader: &mut dyn BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
        std::mem::swap(&mut self.pending, line);
        let filled = std::mem::replace(&mut self.filled, self.pending.len());
        let more = self.read_more(reader);
        self.pending.truncate(self.filled);
        std::mem::swap(&mut self.pending, line);
        self.filled = filled;
        more
    }

    /// Remembers the last header line of `data` for the blocks after it. CloudFront's
    /// parser keeps exactly one piece of state, the columns of the last `#Fields:` line
    /// (other `#` lines are skipped), so replaying that one line restores it.
    ///
    /// Only the `#` that start a line are looked at, from the end: a `#` inside a record
    /// (Boto3 writes `Botocore#1.34` in its user agent, on about one CloudFront line in
    /// sixty) must not send every block through a byte-by-byte walk of its lines,
    /// which cost about 3% of a two-thread parse.
    fn note_headers(&mut self, data: &[u8]) {
        const FIELDS: &[u8] = b"#Fields:";
        if self.format != Format::CloudFront {
            return;
        }
        let line_at = |start: usize| {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |n| start + n + 1);
            &data[start..end]
        };
        let replayed =
            |line: &[u8]| is_replayed_header(self.format, line.strip_suffix(b"\n").unwrap_or(line));
        let last_fields = memchr::memrchr_iter(b'#', data)
            .filter(|&at| at == 0 || data[at - 1] == b'\n')
            .map(line_at)
            .find(|line| line.starts_with(FIELDS) && replayed(line));
        if let Some(line) = last_fields {
            let mut replay = line.to_vec();
            if replay.last() != Some(&b'\n') {
                replay.push(b'\n');
            }
            self.replay = Arc::new(replay);
            self.replay_lines = 1;
        }
    }
}

/// What receives the serialized blocks, lent one at a time.
type Deliver<'d> = dyn FnMut(&Block) -> Result<(), Stop> + 'd;

/// Serializes events into a [`Block`]; with `deliver`, hands the block on every
/// `flush_at` bytes (the one-thread path).
struct BlockSink<'d, 'r> {
    block: Block,
    flush_at: usize,
    redactor: Option<&'r Redactor>,
    deliver: Option<&'d mut Deliver<'d>>,
}

impl<'d, 'r> BlockSink<'d, 'r> {
    fn new(
        flush_at: usize,
        redactor: Option<&'r Redactor>,
        deliver: Option<&'d mut Deliver<'d>>,
    ) -> Self {
        BlockSink {
            block: Block::default(),
            flush_at,
            redactor,
            deliver,
        }
    }

    fn flush(&mut self) -> Result<(), Stop> {
        if let Some(deliver) = self.deliver.as_mut()
            && (self.block.events > 0 || !self.block.malformed.is_empty())
        {
            deliver(&self.block)?;
            self.block.clear();
        }
        Ok(())
    }
}

impl EventSink for BlockSink<'_, '_> {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        // Flushed before the next event rather than after this one, so the malformed
        // note that follows a raw event stays in that event's block.
        if self.block.ndjson.len() >= self.flush_at {
            self.flush()?;
        }
        self.block.push_event(&event, self.redactor);
        Ok(())
    }

    fn malformed(&mut self, line: u64, reason: &str) {
        self.block.malformed.push((line, reason.to_owned()));
    }
}

/// A worker's sink: serializes the events of one block.
struct BlockWriter {
    block: Block,
    redactor: Option<Redactor>,
}

impl EventSink for BlockWriter {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        self.block.push_event(&event, self.redactor.as_ref());
        Ok(())
    }

    fn malformed(&mut self, line: u64, reason: &str) {
        self.block.malformed.push((line, reason.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOUDFRONT: &str = include_str!("../../../tests/samples/cloudfront.log");
    const S3_ACCESS: &str = include_str!("../../../tests/samples/s3-access.log");
    const ELB: &str = include_str!("../../../tests/samples/elb.log");
    const WAF: &str = include_str!("../../../tests/samples/waf.log");

    fn object() -> ObjectInfo {
        ObjectInfo {
            bucket: "logs".into(),
            key: "AWSLogs/111122223333/cf/E2QWRUHAPOMQZL.2024-03-12-09.a1b2c3d4.gz".into(),
            version: "etag-1".into(),
        }
    }

    /// What a parse gave: NDJSON, malformed notes, and its counts or error.
    type Outcome = (Vec<u8>, Vec<(u64, String)>, Result<ParseStats, ParseError>);

    /// The sequential parser's output: NDJSON, counts and malformed notes.
    fn sequential(format: Format, input: &[u8]) -> (Vec<u8>, ParseStats, Vec<(u64, String)>) {
        let (ndjson, malformed, stats) = sequential_from(format, &mut { input });
        (ndjson, stats.unwrap(), malformed)
    }

    /// The sequential parser's output for what `reader` gives.
    fn sequential_from(format: Format, reader: &mut dyn BufRead) -> Outcome {
        struct Sink(Vec<u8>, Vec<(u64, String)>, Redactor);
        impl EventSink for Sink {
            fn emit(&mut self, event: Event) -> Result<(), Stop> {
                event.write_json(&mut self.0, Some(&self.2));
                self.0.push(b'\n');
                Ok(())
            }
            fn malformed(&mut self, line: u64, reason: &str) {
                self.1.push((line, reason.to_owned()));
            }
        }
        let mut sink = Sink(Vec::new(), Vec::new(), Redactor::new());
        let stats = crate::parse_object(
            format,
            reader,
            &object(),
            &ParseOptions::default(),
            &Enricher::new(),
            &mut sink,
        );
        (sink.0, sink.1, stats)
    }

    fn in_blocks(
        format: Format,
        input: &[u8],
        threads: usize,
        block_bytes: usize,
    ) -> (Vec<u8>, ParseStats, Vec<(u64, String)>, usize) {
        // A small reader buffer, so that blocks end in the middle of reader buffers.
        let mut reader = io::BufReader::with_capacity(7, input);
        let ((ndjson, malformed, stats), blocks) =
            in_blocks_from(format, &mut reader, threads, block_bytes);
        (ndjson, stats.unwrap(), malformed, blocks)
    }

    /// The blocks' output for what `reader` gives, and the number of blocks.
    fn in_blocks_from(
        format: Format,
        reader: &mut dyn BufRead,
        threads: usize,
        block_bytes: usize,
    ) -> (Outcome, usize) {
        let redactor = Redactor::new();
        let (mut ndjson, mut malformed, mut blocks) = (Vec::new(), Vec::new(), 0);
        let stats = parse_object_blocks(
            format,
            reader,
            &object(),
            &ParseOptions::default(),
            &Enricher::new(),
            BlockOptions {
                threads,
                block_bytes,
                redactor: Some(&redactor),
            },
            &mut |block| {
                let lines = block.ndjson.iter().filter(|&&b| b == b'\n').count() as u64;
                assert_eq!(lines, block.events);
                ndjson.extend_from_slice(&block.ndjson);
                malformed.extend(block.malformed.iter().cloned());
                blocks += 1;
                Ok(())
            },
        );
        ((ndjson, malformed, stats), blocks)
    }

    fn assert_same_as_sequential(format: Format, input: &[u8]) {
        let (expected, expected_stats, expected_malformed) = sequential(format, input);
        assert!(expected_stats.events > 0);
        for threads in [1, 2, 3] {
            for block_bytes in [1, 10, 300, 4096, DEFAULT_BLOCK_BYTES] {
                let (ndjson, stats, malformed, blocks) =
                    in_blocks(format, input, threads, block_bytes);
                let what = format!("{format} threads={threads} block_bytes={block_bytes}");
                assert_eq!(
                    String::from_utf8_lossy(&ndjson),
                    String::from_utf8_lossy(&expected),
                    "{what}"
                );
                assert_eq!(stats, expected_stats, "{what}");
                assert_eq!(malformed, expected_malformed, "{what}");
                if threads > 1 && block_bytes == 1 && splits_into_blocks(format) {
                    assert!(blocks > 1, "{what}: {blocks} blocks");
                }
            }
        }
    }

    #[test]
    fn blocks_give_the_sequential_output_on_the_samples() {
        assert_same_as_sequential(Format::CloudFront, CLOUDFRONT.as_bytes());
        assert_same_as_sequential(Format::S3Access, S3_ACCESS.as_bytes());
        assert_same_as_sequential(Format::Elb, ELB.as_bytes());
        assert_same_as_sequential(Format::Waf, WAF.as_bytes());
    }

    /// A `#Fields:` header in the middle changes the columns of every later block; CRLF
    /// line ends, blank lines, a malformed record and a final line without a newline
    /// keep their numbers and offsets.
    #[test]
    fn blocks_keep_headers_line_numbers_and_offsets() {
        let mut lines: Vec<&str> = CLOUDFRONT.lines().collect();
        let data: Vec<&str> = lines.split_off(2);
        let header = lines.join("\r\n");
        let short_fields = "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status";
        let mut text = format!("{header}\r\n\r\n");
        for (i, line) in data.iter().enumerate() {
            text.push_str(line);
            text.push_str(if i % 2 == 0 { "\n" } else { "\r\n" });
            if i == 3 {
                text.push_str("this is not a record\n\n");
            }
            if i == 5 {
                text.push_str("#Version: 1.0\n");
                text.push_str(short_fields);
                text.push('\n');
                let short: Vec<&str> = line.split('\t').take(9).collect();
                text.push_str(&short.join("\t"));
                text.push('\n');
            }
        }
        text.push_str(data[0]);
        assert_same_as_sequential(Format::CloudFront, text.as_bytes());
    }

    /// A line longer than MAX_LINE is reported as the sequential reader reports it, and
    /// the lines after it keep their offsets.
    #[test]
    fn over_long_lines_are_cut_as_in_the_sequential_path() {
        let mut text = String::from("first line\n");
        text.push_str(&"x".repeat(MAX_LINE + 10));
        text.push_str("\r\nafter the long line\n");
        text.push_str(&"y".repeat(MAX_LINE + 1));
        text.push_str("\nlast");
        let (expected, expected_stats, expected_malformed) =
            sequential(Format::Lines, text.as_bytes());
        let (ndjson, stats, malformed, _) = in_blocks(Format::Lines, text.as_bytes(), 2, 1000);
        assert_eq!(ndjson, expected);
        assert_eq!(stats, expected_stats);
        assert_eq!(malformed, expected_malformed);
        assert_eq!(stats.malformed, 2);
    }

    /// Fails after `left` bytes, as a download cut off does.
    struct BreaksAfter<'a> {
        data: &'a [u8],
        left: usize,
    }

    impl io::Read for BreaksAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("connection reset"));
            }
            let n = buf.len().min(self.left).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.left -= n;
            Ok(n)
        }
    }

    /// A read error, wherever it falls (in a short line, in a line longer than a block
    /// or than MAX_LINE, at a block's end), gives the error and, before it, exactly the
    /// events and malformed notes the sequential parser gives for the same input.
    #[test]
    fn a_broken_input_gives_what_the_sequential_parse_gives_before_the_error() {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!("line {i} of a log that breaks\n"));
        }
        let long_at = text.len();
        text.push_str(&"z".repeat(MAX_LINE + 10));
        text.push('\n');
        for i in 0..40 {
            text.push_str(&format!("after {i}\n"));
        }
        let input = text.as_bytes();
        for cut in [
            5,
            31,
            600,
            long_at + 10,
            long_at + 5000,
            long_at + MAX_LINE + 12,
            input.len() - 3,
        ] {
            let broken = || {
                io::BufReader::with_capacity(
                    7,
                    BreaksAfter {
                        data: input,
                        left: cut,
                    },
                )
            };
            let (expected, expected_malformed, result) =
                sequential_from(Format::Lines, &mut broken());
            assert!(matches!(result, Err(ParseError::Io(_))), "cut at {cut}");
            for block_bytes in [1, 300, 4096] {
                let ((ndjson, malformed, result), _) =
                    in_blocks_from(Format::Lines, &mut broken(), 2, block_bytes);
                let what = format!("cut at {cut}, block_bytes={block_bytes}");
                assert!(matches!(result, Err(ParseError::Io(_))), "{what}");
                assert_eq!(
                    String::from_utf8_lossy(&ndjson),
                    String::from_utf8_lossy(&expected),
                    "{what}"
                );
                assert_eq!(malformed, expected_malformed, "{what}");
            }
        }
    }

    #[test]
    fn a_stopping_consumer_stops_the_parse() {
        let redactor = Redactor::new();
        let mut delivered = 0;
        let result = parse_object_blocks(
            Format::S3Access,
            &mut S3_ACCESS.as_bytes(),
            &object(),
            &ParseOptions::default(),
            &Enricher::new(),
            BlockOptions {
                threads: 2,
                block_bytes: 1,
                redactor: Some(&redactor),
            },
            &mut |_| {
                delivered += 1;
                Err(Stop)
            },
        );
        assert!(matches!(result, Err(ParseError::Stopped(Stop))));
        assert_eq!(delivered, 1);
    }
}
