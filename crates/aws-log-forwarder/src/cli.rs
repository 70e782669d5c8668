//! Command-line interface: `run`, `parse`, `replay` and `check-config`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use alf_formats::parallel::{BlockOptions, DEFAULT_BLOCK_BYTES, parse_object_blocks};
use alf_formats::{
    Enricher, Event, EventSink, Format, FormatDetector, ObjectInfo, ParseOptions, Redactor, Stop,
};
use aws_log_forwarder::{
    Config, ConfigErrors, Day, ParseStep, ProgressMode, ReplayOptions, StreamError, parse_stream,
    parse_stream_with,
};
use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for a configuration the daemon cannot use.
pub const EXIT_CONFIG: i32 = 2;
/// Exit code when the input or the runtime failed.
pub const EXIT_FAILURE: i32 = 1;

/// Forwards AWS service logs from S3 (announced on SQS) to an HTTP intake as ECS JSON.
#[derive(Debug, Parser)]
#[command(name = "aws-log-forwarder", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: poll SQS, fetch and parse objects, forward events.
    Run {
        /// TOML configuration file; `ALF_*` environment variables override it
        /// (e.g. ALF_INTAKE__URL sets intake.url).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Parse a local log file (gzip, zstd or plain) and print one ECS JSON event per line.
    Parse(ParseArgs),
    /// Ingest objects that already exist in S3 (history never announced on SQS), through
    /// the same pipeline, intake and acknowledgements as `run`.
    Replay(ReplayArgs),
    /// Validate the configuration and print it with secrets masked.
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Toml)]
        output: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Toml,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// Log format name or `auto` (the names come from the format registry).
    #[arg(long, default_value = "auto", help = format_help("Log format name", "or `auto`"))]
    pub format: String,
    /// S3 key to detect the format from and to record in events (default: the file name).
    #[arg(long)]
    pub key: Option<String>,
    /// S3 bucket name to record in events.
    #[arg(long)]
    pub bucket: Option<String>,
    /// Copy each raw record to event.original.
    #[arg(long)]
    pub keep_original: bool,
    /// Do not redact signatures and session tokens.
    #[arg(long)]
    pub no_redact: bool,
    /// Daemon configuration whose format rules ([[formats.rules]]) decide the format
    /// with `auto`, exactly as the daemon decides it (`ALF_*` variables apply too).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Worker threads for one large object: the decompressed stream is cut into blocks
    /// at line boundaries and the blocks are parsed in parallel, output unchanged and in
    /// order (CloudTrail, GuardDuty and VPC flow logs use one thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Input file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub path: String,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// What to replay: s3://BUCKET or s3://BUCKET/PREFIX.
    pub url: String,
    /// TOML configuration file (as for `run`; sqs.queue_url is not needed).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// First day to replay (YYYY-MM-DD, inclusive): the date in the AWS key layout
    /// (.../YYYY/MM/DD/...), else the object's LastModified.
    #[arg(long, value_parser = parse_day)]
    pub since: Option<Day>,
    /// Last day to replay (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_day)]
    pub until: Option<Day>,
    /// Only objects detected as this format.
    #[arg(long, value_parser = parse_format, help = format_help("Only objects detected as this format", ""))]
    pub format: Option<Format>,
    /// File recording finished objects; a replay run again with it resumes where the
    /// previous one stopped, without re-sending finished objects.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// List and count objects and bytes per detected format; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_day(s: &str) -> Result<Day, String> {
    s.parse()
}

/// A `--format` help line naming every registered format.
fn format_help(what: &str, after: &str) -> String {
    let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    format!("{what} ({}) {after}", names.join(", "))
        .trim_end()
        .to_owned()
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse::<Format>().map_err(|e| e.to_string())
}

/// Output buffer for `parse`: large, so a benchmark measures parsing, not syscalls.
const STDOUT_BUFFER: usize = 1 << 20;

/// Prints events to stdout and malformed-record notes to stderr.
struct PrintSink<'a, W: Write, E: Write> {
    out: W,
    err: E,
    line: Vec<u8>,
    redactor: Option<Redactor>,
    name: &'a str,
    write_error: Option<io::Error>,
}

impl<W: Write, E: Write> EventSink for PrintSink<'_, W, E> {
    fn emit(&mut self, event: Event) -> Result<(), Stop> {
        self.line.clear();
        event.write_json(&mut self.line, self.redactor.as_ref());
        self.line.push(b'\n');
        if let Err(e) = self.out.write_all(&self.line) {
            self.write_error = Some(e);
            return Err(Stop);
        }
        Ok(())
    }

    fn malformed(&mut self, line: u64, reason: &str) {
        let _ = writeln!(self.err, "{}: line {line}: {reason}", self.name);
    }
}

/// `parse`: returns the process exit code.
pub fn parse_command(args: &ParseArgs) -> i32 {
    let forced = if args.format == "auto" {
        None
    } else {
        match args.format.parse::<Format>() {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("--format: {e} (or auto)");
                return EXIT_CONFIG;
            }
        }
    };
    // The daemon's detector: its configured rules, or none.
    let detector = match &args.config {
        Some(path) => match Config::load(Some(path)) {
            Ok(config) => FormatDetector::new(config.formats.detect_rules()),
            Err(e) => {
                eprintln!("config: {e}");
                return EXIT_CONFIG;
            }
        },
        None => FormatDetector::default(),
    };
    let (input, name): (Box<dyn Read + Send>, &str) = if args.path == "-" {
        (Box::new(io::stdin()), "<stdin>")
    } else {
        match File::open(&args.path) {
            Ok(f) => (Box::new(f), args.path.as_str()),
            Err(e) => {
                eprintln!("{}: {e}", args.path);
                return EXIT_FAILURE;
            }
        }
    };
    let key = args.key.clone().unwrap_or_else(|| {
        Path::new(&args.path)
            .file_name()
            .map_or_else(|| "stdin".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    let object = ObjectInfo {
        bucket: args.bucket.clone().unwrap_or_default(),
        key,
        version: String::new(),
    };
    let options = ParseOptions {
        keep_original: args.keep_original,
        ..ParseOptions::default()
    };
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut sink = PrintSink {
        out: BufWriter::with_capacity(STDOUT_BUFFER, stdout.lock()),
        err: BufWriter::new(stderr.lock()),
        line: Vec::with_capacity(4096),
        redactor: (!args.no_redact).then(Redactor::new),
        name,
        write_error: None,
    };
    let enricher = Enricher::new();
    let result = if args.threads > 1 {
        parse_stream_with(
            input,
            &object,
            &detector,
            forced,
            &options,
            ParseStep::Custom(
                |format: Format, reader: &mut dyn std::io::BufRead, options: &ParseOptions| {
                    let how = BlockOptions {
                        threads: usize::from(args.threads),
                        block_bytes: DEFAULT_BLOCK_BYTES,
                        redactor: sink.redactor.as_ref(),
                    };
                    let (out, err, write_error) =
                        (&mut sink.out, &mut sink.err, &mut sink.write_error);
                    parse_object_blocks(
                        format,
                        reader,
                        &object,
                        options,
                        &enricher,
                        how,
                        &mut |block| {
                            for (line, reason) in &block.malformed {
                                let _ = writeln!(err, "{name}: line {line}: {reason}");
                            }
                            out.write_all(&block.ndjson).map_err(|e| {
                                *write_error = Some(e);
                                Stop
                            })
                        },
                    )
                },
            ),
        )
    } else {
        parse_stream(
            input, &object, &detector, forced, &options, &enricher, &mut sink,
        )
    };
    let flushed = sink.out.flush();
    let PrintSink {
        mut err,
        write_error,
        ..
    } = sink;
    let code = match result {
        Ok(parsed) => {
            if parsed.format.is_none() {
                let _ = writeln!(err, "{name}: skipped: {}", parsed.reason);
            }
            0
        }
        Err(StreamError::Read(e)) => {
            let _ = writeln!(err, "{name}: reading the input failed: {e}");
            EXIT_FAILURE
        }
        Err(e @ (StreamError::Unsupported(_) | StreamError::Parquet(_))) => {
            let _ = writeln!(err, "{name}: {e}");
            EXIT_FAILURE
        }
        Err(StreamError::Stopped(_)) => match write_error {
            // `parse ... | head` closes the pipe: not an error.
            Some(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
            Some(e) => {
                let _ = writeln!(err, "writing to stdout failed: {e}");
                EXIT_FAILURE
            }
            None => EXIT_FAILURE,
        },
    };
    let code = match flushed {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe && code == 0 => {
            let _ = writeln!(err, "writing to stdout failed: {e}");
            EXIT_FAILURE
        }
        _ => code,
    };
    let _ = err.flush();
    code
}

/// Prints every configuration problem, one `config: section.key: ...` line each, and
/// returns the configuration exit code (`run` and `check-config` alike).
pub fn config_errors(errors: &ConfigErrors) -> i32 {
    for e in errors.iter() {
        eprintln!("config: {e}");
    }
    EXIT_CONFIG
}

/// `check-config`: returns the process exit code.
pub fn check_config_command(path: Option<&Path>, output: OutputFormat) -> i32 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => return config_errors(&errors),
    };
    let text = match output {
        OutputFormat::Toml => config.masked_toml(),
        OutputFormat::Json => {
            serde_json::to_string_pretty(&config.masked()).unwrap_or_default() + "\n"
        }
    };
    print!("{text}");
    0
}

impl ReplayArgs {
    pub fn options(&self) -> ReplayOptions {
        ReplayOptions {
            url: self.url.clone(),
            since: self.since,
            until: self.until,
            format: self.format,
            checkpoint: self.checkpoint.clone(),
            dry_run: self.dry_run,
            progress: ProgressMode::for_stderr(),
        }
    }
}
