//! Gzip decompression of layers: ISA-L's igzip when libgraph was built with it
//! (`libisal-dev` present at build time), zlib-rs through flate2 otherwise.
//!
//! Both read concatenated gzip members as one stream (like `gzip -d`), verify every
//! member's CRC32 and length, and report corrupt or truncated data as an error.

use std::io::{BufRead, Read};

/// Which gzip decoder this process uses: `"isa-l"` (built with it, and `libisal.so.2`
/// opens) or `"zlib-rs"`.
pub fn gzip_backend() -> &'static str {
    if isal_available() { "isa-l" } else { "zlib-rs" }
}

#[cfg(longshore_isal)]
fn isal_available() -> bool {
    isal::available()
}

#[cfg(not(longshore_isal))]
fn isal_available() -> bool {
    false
}

/// A decoder of the (possibly multi-member) gzip stream `r`.
pub(crate) fn decoder<'a, R: BufRead + 'a>(r: R) -> Box<dyn Read + 'a> {
    #[cfg(longshore_isal)]
    if isal::available() {
        return Box::new(isal::GzDecoder::new(r));
    }
    Box::new(flate2::bufread::MultiGzDecoder::new(r))
}

#[cfg(longshore_isal)]
mod isal {
    use std::ffi::{c_int, c_void};
    use std::io::{self, BufRead, Read};
    use std::ptr::NonNull;

    unsafe extern "C" {
        fn ls_isal_new() -> *mut c_void;
        fn ls_isal_reset(state: *mut c_void);
        fn ls_isal_inflate(
            state: *mut c_void,
            input: *const u8,
            in_len: u32,
            consumed: *mut u32,
            out: *mut u8,
            out_len: u32,
            produced: *mut u32,
            finished: *mut c_int,
        ) -> c_int;
        fn ls_isal_free(state: *mut c_void);
        fn ls_isal_available() -> c_int;
    }

    /// Whether libisal opens (on first use: it is not linked, see csrc/isal_shim.c).
    pub(super) fn available() -> bool {
        // SAFETY: ls_isal_available takes no arguments; it opens the library once
        // (pthread_once) and only reads what that set afterwards.
        unsafe { ls_isal_available() != 0 }
    }

    /// ISA-L's inflate state (heap memory owned by this value alone).
    struct Inflate(NonNull<c_void>);

    struct Step {
        status: c_int,
        consumed: usize,
        produced: usize,
        finished: bool,
    }

    impl Inflate {
        fn new() -> io::Result<Inflate> {
            // SAFETY: ls_isal_new takes no arguments and returns a fresh state or null.
            let p = unsafe { ls_isal_new() };
            NonNull::new(p)
                .map(Inflate)
                .ok_or_else(|| io::Error::other("gzip: out of memory for the inflate state"))
        }

        fn reset(&mut self) {
            // SAFETY: self.0 is a live state from ls_isal_new, used by no one else.
            unsafe { ls_isal_reset(self.0.as_ptr()) }
        }

        fn step(&mut self, input: &[u8], out: &mut [u8]) -> Step {
            let in_len = input.len().min(u32::MAX as usize) as u32;
            let out_len = out.len().min(u32::MAX as usize) as u32;
            let (mut consumed, mut produced, mut finished) = (0u32, 0u32, 0 as c_int);
            // SAFETY: the state is live and exclusively ours; `input` is readable for
            // in_len bytes and `out` writable for out_len bytes for the whole call, and
            // ISA-L keeps no pointer to either after it returns (next_in/next_out are
            // overwritten on every call).
            let status = unsafe {
                ls_isal_inflate(
                    self.0.as_ptr(),
                    input.as_ptr(),
                    in_len,
                    &mut consumed,
                    out.as_mut_ptr(),
                    out_len,
                    &mut produced,
                    &mut finished,
                )
            };
            Step {
                status,
                consumed: consumed as usize,
                produced: produced as usize,
                finished: finished != 0,
            }
        }
    }

    impl Drop for Inflate {
        fn drop(&mut self) {
            // SAFETY: the state came from ls_isal_new and is freed exactly once, here.
            unsafe { ls_isal_free(self.0.as_ptr()) }
        }
    }

    fn status_error(status: c_int) -> io::Error {
        let what = match status {
            -1 => "invalid deflate block",
            -2 => "invalid deflate symbol",
            -3 => "invalid lookback distance",
            -4 => "invalid gzip header",
            -5 => "unsupported compression method",
            -6 => "CRC32 or length of the data does not match the gzip trailer",
            6 => "stream needs a preset dictionary",
            _ => "corrupt deflate stream",
        };
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} (ISA-L status {status})"),
        )
    }

    /// A multi-member gzip decoder on ISA-L.
    pub(crate) struct GzDecoder<R> {
        inner: R,
        state: Option<Inflate>,
        member_done: bool,
    }

    impl<R: BufRead> GzDecoder<R> {
        pub(crate) fn new(inner: R) -> Self {
            GzDecoder {
                inner,
                state: None,
                member_done: false,
            }
        }
    }

    impl<R: BufRead> Read for GzDecoder<R> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if out.is_empty() {
                return Ok(0);
            }
            let state = match &mut self.state {
                Some(s) => s,
                None => self.state.insert(Inflate::new()?),
            };
            loop {
                if self.member_done {
                    // another member follows, or the stream ends here
                    if self.inner.fill_buf()?.is_empty() {
                        return Ok(0);
                    }
                    state.reset();
                    self.member_done = false;
                }
                let input = self.inner.fill_buf()?;
                let eof = input.is_empty();
                let step = state.step(input, out);
                self.inner.consume(step.consumed);
                if step.status < 0 || step.status == 6 {
                    return Err(status_error(step.status));
                }
                if step.finished {
                    self.member_done = true;
                }
                if step.produced > 0 {
                    return Ok(step.produced);
                }
                if !step.finished && eof && step.consumed == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "gzip stream ends before its end of data",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(io::BufReader::with_capacity(4096, input)).read_to_end(&mut out)?;
        Ok(out)
    }

    fn sample(n: usize) -> Vec<u8> {
        (0..n as u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn round_trips_and_reads_concatenated_members() {
        let (a, b) = (sample(300_000), b"second member".to_vec());
        assert_eq!(decode(&gz(&a)).unwrap(), a);
        let mut both = gz(&a);
        both.extend(gz(&b));
        both.extend(gz(b""));
        let mut want = a.clone();
        want.extend(&b);
        assert_eq!(decode(&both).unwrap(), want);
        assert_eq!(decode(&gz(b"")).unwrap(), b"");
    }

    #[test]
    fn reads_headers_with_name_comment_and_extra() {
        let data = sample(10_000);
        let mut e = flate2::GzBuilder::new()
            .filename("layer.tar")
            .comment("a comment")
            .extra(vec![1, 2, 3, 4])
            .write(Vec::new(), flate2::Compression::best());
        e.write_all(&data).unwrap();
        assert_eq!(decode(&e.finish().unwrap()).unwrap(), data);
    }

    #[test]
    fn corrupt_truncated_and_trailing_garbage_are_errors() {
        let good = gz(&sample(100_000));
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 0xff;
        assert!(decode(&bad_crc).is_err(), "a wrong CRC32 must be refused");
        let mut bad_len = good.clone();
        bad_len[n - 2] ^= 0x01;
        assert!(decode(&bad_len).is_err(), "a wrong ISIZE must be refused");
        let mut flipped = good.clone();
        flipped[n / 2] ^= 0x55;
        assert!(
            decode(&flipped).is_err(),
            "corrupt deflate data must be refused"
        );
        let e = decode(&good[..n / 2]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        assert!(
            decode(&good[..n - 3]).is_err(),
            "a cut trailer must be refused"
        );
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"not gzip at all");
        assert!(
            decode(&trailing).is_err(),
            "bytes after the last member that are not gzip"
        );
        assert!(decode(b"\x1f\x8b\x09\x00garbage").is_err());
    }

    #[test]
    fn the_backend_is_named() {
        assert!(["isa-l", "zlib-rs"].contains(&gzip_backend()));
    }
}
