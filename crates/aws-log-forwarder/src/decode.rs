//! Decompression chosen by magic bytes, as a streaming [`BufRead`].
//!
//! AWS services compress their log deliveries (gzip almost everywhere, sometimes
//! zstd or plain text), and the key suffix cannot be trusted (`.log` files that are
//! gzip, `.gz` files S3 transparently stores decompressed). The first bytes decide.
//! Gzip goes through [`MultiGzDecoder`] because services such as Firehose and
//! CloudFront concatenate several gzip members into one object: a single-member
//! decoder would stop silently after the first one.

use std::io::{self, BufRead, BufReader, Cursor, Read};

use flate2::read::MultiGzDecoder;

/// Buffer size between the decompressor and the line reader: large enough that line
/// parsing rarely crosses a refill, small enough to stay bounded per object.
pub const DECODED_BUFFER: usize = 256 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression an object was found to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    Plain,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Plain => "plain",
        }
    }

    /// Recognises the compression from the first bytes of an object.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::Plain
        }
    }
}

/// Wraps `reader` in the decompressor its first bytes call for, and tells which
/// compression was found.
pub fn decoder_with_kind<R: Read + Send + 'static>(
    mut reader: R,
) -> io::Result<(Box<dyn BufRead + Send>, Compression)> {
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut reader, &mut magic)?;
    let kind = Compression::sniff(&magic[..n]);
    // Put the peeked bytes back in front of the stream.
    let whole = Cursor::new(magic[..n].to_vec()).chain(reader);
    let decoded: Box<dyn BufRead + Send> = match kind {
        Compression::Gzip => Box::new(BufReader::with_capacity(
            DECODED_BUFFER,
            MultiGzDecoder::new(whole),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            DECODED_BUFFER,
            zstd::stream::read::Decoder::new(whole)?,
        )),
        Compression::Plain => Box::new(BufReader::with_capacity(DECODED_BUFFER, whole)),
    };
    Ok((decoded, kind))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Counts the bytes that pass through a reader (compressed size of an S3 body).
pub struct CountingReader<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R, count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        CountingReader { inner, count }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Counts the bytes consumed from a [`BufRead`] (decompressed size of an object).
pub struct CountingBufReader<R> {
    inner: R,
    count: u64,
}

impl<R> CountingBufReader<R> {
    pub fn new(inner: R) -> Self {
        CountingBufReader { inner, count: 0 }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: BufRead> Read for CountingBufReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CountingBufReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.count += amt as u64;
        self.inner.consume(amt);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// `n` lines `line 0` ... gzip-compressed: a stream long enough to cut anywhere.
    pub(crate) fn gzipped_lines(n: u32) -> Vec<u8> {
        let data: Vec<u8> = (0..n)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        gzip(&data)
    }

    /// `data` gzip-compressed (default level); the pipeline's tests use it too.
    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_all(input: Vec<u8>) -> io::Result<(Vec<u8>, Compression)> {
        let (mut r, kind) = decoder_with_kind(Cursor::new(input))?;
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok((out, kind))
    }

    #[test]
    fn multi_member_gzip_decodes_every_member() {
        let mut input = gzip(b"first line\n");
        input.extend(gzip(b"second line\n"));
        input.extend(gzip(b"third line\n"));
        let (out, kind) = read_all(input).unwrap();
        assert_eq!(kind, Compression::Gzip);
        assert_eq!(out, b"first line\nsecond line\nthird line\n");
    }

    #[test]
    fn zstd_decodes() {
        let input = zstd::stream::encode_all(&b"zstd line 1\nzstd line 2\n"[..], 3).unwrap();
        let (out, kind) = read_all(input).unwrap();
        assert_eq!(kind, Compression::Zstd);
        assert_eq!(out, b"zstd line 1\nzstd line 2\n");
    }

    #[test]
    fn plain_and_short_inputs_pass_through() {
        let (out, kind) = read_all(b"plain text\n".to_vec()).unwrap();
        assert_eq!(kind, Compression::Plain);
        assert_eq!(out, b"plain text\n");
        // Shorter than the magic: still returned whole.
        assert_eq!(read_all(b"ab".to_vec()).unwrap().0, b"ab");
        // A lone 0x1f is not gzip.
        assert_eq!(
            read_all(vec![0x1f]).unwrap(),
            (vec![0x1f], Compression::Plain)
        );
    }

    #[test]
    fn empty_input_is_empty_plain_text() {
        assert_eq!(
            read_all(Vec::new()).unwrap(),
            (Vec::new(), Compression::Plain)
        );
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let full = gzipped_lines(20_000);
        for cut in [3, 10, full.len() / 2, full.len() - 4] {
            let err = read_all(full[..cut].to_vec()).expect_err("truncated gzip must fail");
            assert!(
                matches!(
                    err.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::InvalidInput
                        | io::ErrorKind::InvalidData
                        | io::ErrorKind::Other
                ),
                "cut at {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn truncated_zstd_is_an_error() {
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let full = zstd::stream::encode_all(&data[..], 3).unwrap();
        assert!(read_all(full[..full.len() / 2].to_vec()).is_err());
    }

    #[test]
    fn counting_readers_count() {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut r = CountingReader::new(&b"0123456789"[..], count.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 10);

        let mut r = CountingBufReader::new(&b"ab\ncd\nef"[..]);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(r.count(), 3);
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.count(), 8);
    }
}
