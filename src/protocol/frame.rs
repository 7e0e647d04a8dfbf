//! Framing: `78 78 LEN(1)` or `79 79 LEN(2)`, then protocol(1), content(N),
//! serial(2), CRC(2), and the stop bytes `0D 0A`.
//!
//! The length field counts protocol + content + serial + CRC, exactly as the
//! reference server's builder does, so the whole frame is `start(2) + len
//! field + LEN + stop(2)` bytes. The CRC covers the length field through the
//! serial.
//!
//! The reference server never checked the CRC; we do, and a frame that fails
//! it is dropped (counted) unless [`FrameConfig::accept_bad_crc`] is set for
//! device models known to send wrong CRCs.

use bytes::{BufMut, BytesMut};

use super::crc::crc_itu;

pub const START_SHORT: [u8; 2] = [0x78, 0x78];
pub const START_LONG: [u8; 2] = [0x79, 0x79];
pub const STOP: [u8; 2] = [0x0D, 0x0A];

/// protocol(1) + serial(2) + crc(2): the smallest length field that can be real.
pub const MIN_LENGTH: usize = 5;

/// Everything around the content of a short frame: start(2) + len(1) +
/// protocol(1) + serial(2) + crc(2) + stop(2).
pub const SHORT_OVERHEAD: usize = 10;
/// The same for a long (`79 79`) frame, whose length field has two bytes.
pub const LONG_OVERHEAD: usize = 11;

/// The largest frame the default configuration accepts, in bytes on the wire.
///
/// The largest legitimate message is a 0xB3 bluetooth location report with
/// 255 beacons: 6 + 1 + 255 × 30 = 7 657 content bytes, 7 668 on the wire.
pub const DEFAULT_MAX_FRAME: usize = 8192;

/// Bad-CRC candidates resynced byte by byte in one call before the decoder
/// starts skipping them whole (see `next_frame`).
const DAMAGED_PER_CALL: u32 = 8;

/// Complete candidates whose CRC is checked ahead of an incomplete frame, per read.
const LOOKAHEAD_CANDIDATES: usize = 4;
/// Start markers looked at in one lookahead (finding them is cheap; their CRC is not).
const LOOKAHEAD_MARKERS: usize = 64;

/// Which start marker a frame used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Marker {
    /// `78 78` with a one-byte length.
    Short,
    /// `79 79` with a two-byte length.
    Long,
}

/// One complete frame, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub marker: Marker,
    pub protocol: u8,
    pub serial: u16,
    /// The information content between the protocol number and the serial.
    pub content: &'a [u8],
    /// The whole frame, start marker to stop bytes, for audit and replay.
    pub raw: &'a [u8],
    /// False only for frames let through by [`FrameConfig::accept_bad_crc`].
    pub crc_ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameConfig {
    /// Frames longer than this on the wire are rejected (and counted) instead
    /// of being buffered. This is what bounds every per-connection buffer.
    pub max_frame_len: usize,
    /// Hand on frames whose CRC is wrong (still counted in
    /// [`FrameStats::accepted_bad_crc`]). Off by default.
    pub accept_bad_crc: bool,
}

impl Default for FrameConfig {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME,
            accept_bad_crc: false,
        }
    }
}

/// What the decoder saw, by kind. Plain counters: one decoder serves one
/// shard, so nothing here is shared between threads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames handed on.
    pub frames: u64,
    /// Bytes of the frames handed on.
    pub frame_bytes: u64,
    /// Bytes skipped while looking for a start marker.
    pub garbage_bytes: u64,
    /// Times the decoder gave up on a candidate frame and searched again.
    pub resyncs: u64,
    /// Candidate frames whose CRC did not match.
    pub bad_crc: u64,
    /// Of those, the frames handed on anyway because `accept_bad_crc` is set.
    pub accepted_bad_crc: u64,
    /// Candidate frames without `0D 0A` where the length says they end.
    pub bad_stop: u64,
    /// Length fields below [`MIN_LENGTH`].
    pub bad_length: u64,
    /// Length fields that would make the frame exceed `max_frame_len`.
    pub oversized: u64,
    /// CRCs computed looking ahead of an incomplete frame.
    pub lookahead_crcs: u64,
}

impl FrameStats {
    /// Adds another decoder's counters to these (for merging shards).
    pub fn merge(&mut self, other: &FrameStats) {
        self.frames += other.frames;
        self.frame_bytes += other.frame_bytes;
        self.garbage_bytes += other.garbage_bytes;
        self.resyncs += other.resyncs;
        self.bad_crc += other.bad_crc;
        self.accepted_bad_crc += other.accepted_bad_crc;
        self.bad_stop += other.bad_stop;
        self.bad_length += other.bad_length;
        self.oversized += other.oversized;
        self.lookahead_crcs += other.lookahead_crcs;
    }

    /// All the ways a candidate frame can be rejected.
    pub fn rejected(&self) -> u64 {
        self.bad_crc - self.accepted_bad_crc + self.bad_stop + self.bad_length + self.oversized
    }
}

/// A streaming frame decoder.
///
/// It keeps no per-connection state: the caller owns the buffer, so one
/// decoder (and one set of counters) can serve every connection of a shard.
#[derive(Debug, Clone, Default)]
pub struct FrameDecoder {
    pub config: FrameConfig,
    pub stats: FrameStats,
}

impl FrameDecoder {
    pub fn new(config: FrameConfig) -> Self {
        Self {
            config,
            stats: FrameStats::default(),
        }
    }

    /// Takes back the counting of a frame handed on to be read elsewhere
    /// (a login moved with its socket to the shard that owns the IMEI,
    /// whose own decoder counts it).
    pub fn unread(&mut self, frame: &Frame<'_>) {
        self.stats.frames -= 1;
        self.stats.frame_bytes -= frame.raw.len() as u64;
    }

    /// Decodes the next frame of `input[*pos..]` and moves `*pos` past it and
    /// past any garbage skipped before it.
    ///
    /// `None` means more bytes are needed: everything before `*pos` can be
    /// dropped, and `input[*pos..]` is a prefix of a frame (never longer than
    /// `max_frame_len`) to keep for the next read.
    pub fn next_frame<'a>(&mut self, input: &'a [u8], pos: &mut usize) -> Option<Frame<'a>> {
        self.next_frame_since(input, pos, 0)
    }

    /// [`Self::next_frame`] for a caller that keeps a partial frame between
    /// reads: `seen` is how much of `input` the last call that returned
    /// `None` had. Candidates that were already complete then were already
    /// looked at and are not checked again, so a frame trickled in many
    /// reads costs what it costs in one.
    pub fn next_frame_since<'a>(
        &mut self,
        input: &'a [u8],
        pos: &mut usize,
        seen: usize,
    ) -> Option<Frame<'a>> {
        let mut damaged_budget = DAMAGED_PER_CALL;
        loop {
            let rest = &input[*pos..];
            let &first = rest.first()?;
            let marker = match (first, rest.get(1)) {
                (0x78, Some(0x78)) => Marker::Short,
                (0x79, Some(0x79)) => Marker::Long,
                // A lone marker byte at the end may be the first half of a start marker.
                (0x78 | 0x79, None) => return None,
                _ => {
                    let found = find_start(rest);
                    let skip = found.unwrap_or_else(|| match rest.last() {
                        // Keep a trailing marker byte: its twin may be in the next read.
                        Some(0x78 | 0x79) => rest.len() - 1,
                        _ => rest.len(),
                    });
                    self.stats.garbage_bytes += skip as u64;
                    *pos += skip;
                    found?;
                    continue;
                }
            };

            let (header, total, crc_ok) = match candidate(rest, self.config.max_frame_len) {
                Candidate::Whole {
                    header,
                    total,
                    crc_ok,
                } => (header, total, crc_ok),
                Candidate::BadLength => {
                    self.stats.bad_length += 1;
                    self.resync(pos, 1);
                    continue;
                }
                Candidate::Oversized => {
                    self.stats.oversized += 1;
                    self.resync(pos, 1);
                    continue;
                }
                Candidate::BadStop => {
                    self.stats.bad_stop += 1;
                    self.resync(pos, 1);
                    continue;
                }
                Candidate::Incomplete => {
                    // A stray marker byte just before a real frame reads as the
                    // start of a long frame, and waiting for it would stall the
                    // badge (it waits for our reply). If a complete, valid frame
                    // starts later in what we already have, this one was garbage.
                    let seen_here = seen.saturating_sub(*pos);
                    if let Some(skip) = self.later_valid_frame(rest, seen_here) {
                        self.resync(pos, skip);
                        continue;
                    }
                    return None;
                }
            };
            let raw = &rest[..total];
            if !crc_ok {
                self.stats.bad_crc += 1;
                if !self.config.accept_bad_crc {
                    // Length and stop bytes agree: a damaged frame, or a
                    // forged one. Normally skip one byte, so that a real
                    // frame starting inside it is still found. But a stream
                    // of forged candidates would then cost a CRC over up to
                    // max_frame_len bytes per input byte; after a few in one
                    // call, skip each candidate whole, keeping only a valid
                    // frame found inside it.
                    let skip = if damaged_budget > 0 {
                        damaged_budget -= 1;
                        1
                    } else {
                        self.later_valid_frame(raw, 0).unwrap_or(total)
                    };
                    self.resync(pos, skip);
                    continue;
                }
                self.stats.accepted_bad_crc += 1;
            }
            let crc_at = total - 4;
            self.stats.frames += 1;
            self.stats.frame_bytes += total as u64;
            *pos += total;
            return Some(Frame {
                marker,
                protocol: raw[header],
                serial: u16::from_be_bytes([raw[crc_at - 2], raw[crc_at - 1]]),
                content: &raw[header + 1..crc_at - 2],
                raw,
                crc_ok,
            });
        }
    }

    /// Iterates over the complete frames in `input`. Afterwards,
    /// [`Frames::consumed`] tells how many leading bytes can be dropped.
    pub fn frames<'d, 'a>(&'d mut self, input: &'a [u8]) -> Frames<'d, 'a> {
        Frames {
            decoder: self,
            input,
            pos: 0,
        }
    }

    /// The offset of the first complete frame with a good CRC that starts
    /// after the first byte of `rest`. Runs only while a frame is incomplete
    /// (or inside a candidate whose CRC failed, where `rest` is that candidate),
    /// and looks at no more than [`LOOKAHEAD_CANDIDATES`] markers: a sender
    /// trickling a partial frame stuffed with markers must not make every
    /// read rescan (and CRC) all of them. Past the cap, the decoder simply
    /// waits for the candidate to complete, as it would without lookahead.
    ///
    /// Candidates that were complete within the first `seen` bytes were
    /// looked at by an earlier call and are skipped without their CRC.
    fn later_valid_frame(&mut self, rest: &[u8], seen: usize) -> Option<usize> {
        let mut from = 1;
        let mut checked = 0;
        for _ in 0..LOOKAHEAD_MARKERS {
            let i = find_start(&rest[from..])? + from;
            if let Candidate::Whole { crc_ok, total, .. } =
                candidate(&rest[i..], self.config.max_frame_len)
            {
                if i + total > seen {
                    self.stats.lookahead_crcs += 1;
                    if crc_ok {
                        return Some(i);
                    }
                    checked += 1;
                    if checked == LOOKAHEAD_CANDIDATES {
                        return None;
                    }
                }
            }
            from = i + 1;
        }
        None
    }

    /// Gives up on the candidate at `*pos` and skips `skip` bytes of it:
    /// usually one, so that a real frame starting inside it is still found.
    fn resync(&mut self, pos: &mut usize, skip: usize) {
        self.stats.resyncs += 1;
        self.stats.garbage_bytes += skip as u64;
        *pos += skip;
    }
}

/// Iterator returned by [`FrameDecoder::frames`].
pub struct Frames<'d, 'a> {
    decoder: &'d mut FrameDecoder,
    input: &'a [u8],
    pos: usize,
}

impl<'a> Frames<'_, 'a> {
    /// Bytes of the input that were decoded or skipped; the rest is a partial
    /// frame to keep.
    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Frames<'_, 'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        self.decoder.next_frame(self.input, &mut self.pos)
    }
}

/// What the bytes at a start marker amount to, checked in the order that
/// decides which counter a rejected candidate goes to.
enum Candidate {
    /// The header or the rest of the frame has not arrived yet.
    Incomplete,
    BadLength,
    Oversized,
    BadStop,
    /// Length and stop bytes agree; `crc_ok` says whether the CRC does too.
    Whole {
        header: usize,
        total: usize,
        crc_ok: bool,
    },
}

/// `bytes` starts with `78 78` or `79 79`.
fn candidate(bytes: &[u8], max_frame_len: usize) -> Candidate {
    let (header, length) = match bytes {
        [0x78, _, len, ..] => (3, *len as usize),
        [0x79, _, hi, lo, ..] => (4, u16::from_be_bytes([*hi, *lo]) as usize),
        _ => return Candidate::Incomplete,
    };
    if length < MIN_LENGTH {
        return Candidate::BadLength;
    }
    let total = header + length + 2;
    if total > max_frame_len {
        return Candidate::Oversized;
    }
    if bytes.len() < total {
        return Candidate::Incomplete;
    }
    if bytes[total - 2..total] != STOP {
        return Candidate::BadStop;
    }
    let crc_at = total - 4;
    let sent = u16::from_be_bytes([bytes[crc_at], bytes[crc_at + 1]]);
    Candidate::Whole {
        header,
        total,
        crc_ok: crc_itu(&bytes[2..crc_at]) == sent,
    }
}

/// The offset of the first `78 78` or `79 79` in `bytes`.
fn find_start(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2_iter(0x78, 0x79, bytes).find(|&i| bytes.get(i + 1) == Some(&bytes[i]))
}

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("content of {0} bytes does not fit a frame (at most 65 530)")]
    TooLong(usize),
}

/// Writes one frame to `out`: the marker chosen by size (`79 79` once the
/// length no longer fits one byte), `content_len` bytes produced by
/// `write_content`, the serial, the CRC and the stop bytes.
///
/// `write_content` must write exactly `content_len` bytes; this is checked in
/// debug builds. Writing straight into `out` keeps replies allocation-free.
pub fn write_frame(
    out: &mut BytesMut,
    protocol: u8,
    serial: u16,
    content_len: usize,
    write_content: impl FnOnce(&mut BytesMut),
) -> Result<(), EncodeError> {
    let length = 1 + content_len + 4;
    if length > u16::MAX as usize {
        return Err(EncodeError::TooLong(content_len));
    }
    let start = out.len();
    out.reserve(length + 6);
    if length <= u8::MAX as usize {
        out.put_slice(&START_SHORT);
        out.put_u8(length as u8);
    } else {
        out.put_slice(&START_LONG);
        out.put_u16(length as u16);
    }
    out.put_u8(protocol);
    let content_start = out.len();
    write_content(out);
    debug_assert_eq!(
        out.len() - content_start,
        content_len,
        "protocol 0x{protocol:02X}: content length promised and written differ"
    );
    out.put_u16(serial);
    let crc = crc_itu(&out[start + 2..]);
    out.put_u16(crc);
    out.put_slice(&STOP);
    Ok(())
}

/// [`write_frame`] for content that is already one slice.
pub fn write_frame_bytes(
    out: &mut BytesMut,
    protocol: u8,
    serial: u16,
    content: &[u8],
) -> Result<(), EncodeError> {
    write_frame(out, protocol, serial, content.len(), |o| {
        o.put_slice(content)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    const LOGIN: &str = "78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A";

    fn decode_all(dec: &mut FrameDecoder, input: &[u8]) -> (Vec<(u8, u16, Vec<u8>)>, usize) {
        let mut it = dec.frames(input);
        let frames = it
            .by_ref()
            .map(|f| (f.protocol, f.serial, f.content.to_vec()))
            .collect();
        (frames, it.consumed())
    }

    #[test]
    fn decodes_the_manual_login_example() {
        let mut dec = FrameDecoder::default();
        let bytes = hex(LOGIN);
        let mut pos = 0;
        let f = dec.next_frame(&bytes, &mut pos).expect("frame");
        assert_eq!(f.marker, Marker::Short);
        assert_eq!(f.protocol, 0x01);
        assert_eq!(f.serial, 1);
        assert_eq!(f.content, &hex("01 23 45 67 89 01 23 45")[..]);
        assert_eq!(f.raw, &bytes[..]);
        assert!(f.crc_ok);
        assert_eq!(pos, bytes.len());
        assert_eq!(dec.stats.frames, 1);
        assert_eq!(dec.stats.frame_bytes, 18);
    }

    #[test]
    fn encoder_reproduces_the_manual_example() {
        let mut out = BytesMut::new();
        write_frame_bytes(&mut out, 0x01, 1, &hex("01 23 45 67 89 01 23 45")).unwrap();
        assert_eq!(&out[..], &hex(LOGIN)[..]);
    }

    #[test]
    fn content_over_250_bytes_uses_the_long_marker() {
        let mut out = BytesMut::new();
        write_frame_bytes(&mut out, 0xB3, 7, &[0xAB; 250]).unwrap();
        assert_eq!(&out[..3], &[0x78, 0x78, 255]);
        out.clear();
        write_frame_bytes(&mut out, 0xB3, 7, &[0xAB; 251]).unwrap();
        assert_eq!(&out[..4], &[0x79, 0x79, 0x01, 0x00]);
        assert_eq!(out.len(), 251 + LONG_OVERHEAD);
        let mut dec = FrameDecoder::default();
        let (frames, used) = decode_all(&mut dec, &out);
        assert_eq!(frames, vec![(0xB3, 7, vec![0xAB; 251])]);
        assert_eq!(used, out.len());
    }

    #[test]
    fn every_split_point_yields_the_same_frames() {
        let mut stream = Vec::new();
        let mut out = BytesMut::new();
        for (i, len) in [0usize, 8, 300, 40].into_iter().enumerate() {
            out.clear();
            write_frame_bytes(&mut out, 0x22, i as u16, &vec![i as u8; len]).unwrap();
            stream.extend_from_slice(&out);
        }
        for split in 0..=stream.len() {
            let mut dec = FrameDecoder::default();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                buf.extend_from_slice(chunk);
                let (frames, used) = decode_all(&mut dec, &buf);
                got.extend(frames);
                let _ = buf.split_to(used);
            }
            assert_eq!(got.len(), 4, "split at {split}");
            assert!(buf.is_empty());
            assert_eq!(dec.stats.garbage_bytes, 0, "split at {split}");
        }
    }

    #[test]
    fn garbage_between_frames_is_skipped_and_counted() {
        let login = hex(LOGIN);
        let mut stream = b"\x00\x01junk\x78".to_vec();
        stream.extend_from_slice(&login);
        stream.extend_from_slice(b"\x79\xFFmore");
        stream.extend_from_slice(&login);
        let mut dec = FrameDecoder::default();
        let (frames, used) = decode_all(&mut dec, &stream);
        assert_eq!(frames.len(), 2);
        assert_eq!(used, stream.len());
        assert_eq!(dec.stats.garbage_bytes, 7 + 6);
        // The stray 78 before the first login read as a 78 78 frame of length 0x78.
        assert_eq!(dec.stats.resyncs, 1);
    }

    #[test]
    fn bad_crc_is_dropped_and_counted_then_the_next_frame_decodes() {
        let mut bad = hex(LOGIN);
        bad[14] ^= 0xFF;
        let mut stream = bad.clone();
        stream.extend_from_slice(&hex(LOGIN));
        let mut dec = FrameDecoder::default();
        let (frames, used) = decode_all(&mut dec, &stream);
        assert_eq!(frames.len(), 1);
        assert_eq!(used, stream.len());
        assert_eq!(dec.stats.bad_crc, 1);
        assert_eq!(dec.stats.resyncs, 1);
        assert_eq!(dec.stats.garbage_bytes, bad.len() as u64);
        assert_eq!(dec.stats.rejected(), 1);
    }

    #[test]
    fn bad_crc_is_handed_on_when_configured() {
        let mut bad = hex(LOGIN);
        bad[14] ^= 0xFF;
        let mut dec = FrameDecoder::new(FrameConfig {
            accept_bad_crc: true,
            ..FrameConfig::default()
        });
        let mut pos = 0;
        let f = dec.next_frame(&bad, &mut pos).unwrap();
        assert!(!f.crc_ok);
        assert_eq!((dec.stats.bad_crc, dec.stats.accepted_bad_crc), (1, 1));
        assert_eq!(dec.stats.rejected(), 0);
    }

    #[test]
    fn frames_inside_a_cut_off_frame_whose_end_lands_on_a_stop_are_kept() {
        // A 40-byte frame cut after 10 bytes, then two 15-byte frames: the
        // cut-off frame's length reaches exactly to the second one's stop bytes.
        let mut long = BytesMut::new();
        write_frame_bytes(&mut long, 0x22, 1, &[0x11; 30]).unwrap();
        assert_eq!(long.len(), 40);
        let mut stream = long[..10].to_vec();
        for serial in [2, 3, 4] {
            let mut hb = BytesMut::new();
            write_frame_bytes(&mut hb, 0x13, serial, &[0x44, 80, 4, 0, 1]).unwrap();
            assert_eq!(hb.len(), 15);
            stream.extend_from_slice(&hb);
        }
        let mut dec = FrameDecoder::default();
        let (frames, used) = decode_all(&mut dec, &stream);
        assert_eq!(
            frames.iter().map(|f| f.1).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        assert_eq!(used, stream.len());
        assert_eq!((dec.stats.bad_crc, dec.stats.garbage_bytes), (1, 10));
    }

    #[test]
    fn forged_candidates_cost_one_crc_each() {
        // Every 6 bytes a long candidate whose stop bytes match and whose
        // CRC does not: each must be skipped whole, not byte by byte.
        let unit = [0x79, 0x79, 0x1F, 0xF8, 0x0D, 0x0A];
        let input: Vec<u8> = unit.iter().copied().cycle().take(64 * 1024).collect();
        let mut dec = FrameDecoder::default();
        let (frames, _) = decode_all(&mut dec, &input);
        assert!(frames.is_empty());
        // A few one-byte resyncs, then whole 8 KiB candidates: tens of CRCs, not thousands.
        assert!(dec.stats.bad_crc <= 32, "{:?}", dec.stats);
    }

    #[test]
    fn wrong_stop_bytes_resync_to_the_next_frame() {
        let mut bad = hex(LOGIN);
        let n = bad.len();
        bad[n - 1] = 0x0B;
        bad.extend_from_slice(&hex(LOGIN));
        let mut dec = FrameDecoder::default();
        let (frames, _) = decode_all(&mut dec, &bad);
        assert_eq!(frames.len(), 1);
        assert_eq!(dec.stats.bad_stop, 1);
    }

    #[test]
    fn impossible_and_oversized_lengths_are_rejected_without_buffering() {
        let mut dec = FrameDecoder::new(FrameConfig {
            max_frame_len: 64,
            ..FrameConfig::default()
        });
        let mut input = vec![0x78, 0x78, 0x02, 0x01];
        input.extend_from_slice(&[0x79, 0x79, 0xFF, 0xFF, 0x00]);
        input.extend_from_slice(&hex(LOGIN));
        let (frames, used) = decode_all(&mut dec, &input);
        assert_eq!(frames.len(), 1);
        assert_eq!(used, input.len());
        assert_eq!(dec.stats.bad_length, 1);
        assert_eq!(dec.stats.oversized, 1);
    }

    #[test]
    fn a_partial_frame_is_kept_and_a_lone_marker_byte_too() {
        let login = hex(LOGIN);
        let mut dec = FrameDecoder::default();
        let (frames, used) = decode_all(&mut dec, &login[..10]);
        assert!(frames.is_empty());
        assert_eq!(used, 0);
        let (frames, used) = decode_all(&mut dec, b"abc\x78");
        assert!(frames.is_empty());
        assert_eq!(used, 3);
        let (frames, used) = decode_all(&mut dec, b"abc\x78\x00");
        assert!(frames.is_empty());
        assert_eq!(used, 5);
    }

    /// Feeds `input` in pieces of `step` bytes the way a connection does:
    /// the unfinished rest is kept and grows, and the decoder is told how
    /// much of it it saw.
    fn trickle(dec: &mut FrameDecoder, input: &[u8], step: usize) -> usize {
        let mut partial: Vec<u8> = Vec::new();
        let mut frames = 0;
        for piece in input.chunks(step) {
            let seen = partial.len();
            partial.extend_from_slice(piece);
            let mut pos = 0;
            while dec.next_frame_since(&partial, &mut pos, seen).is_some() {
                frames += 1;
            }
            partial.drain(..pos);
        }
        frames
    }

    #[test]
    fn a_trickled_frame_costs_what_it_costs_whole() {
        // A long frame still arriving, with complete forged candidates
        // inside it: each is checked once, not once per read.
        let mut forged = Vec::new();
        for _ in 0..3 {
            forged.extend_from_slice(&[0x78, 0x78, 0x05, 0x13, 0, 0, 0, 0, 0x0D, 0x0A]);
        }
        let mut body = vec![0x79, 0x79, 0x01, 0x00];
        body.extend_from_slice(&forged);
        body.resize(4 + 256 - 4, 0x55);
        let mut input = body.clone();
        let whole = {
            let mut dec = FrameDecoder::default();
            trickle(&mut dec, &input, input.len());
            dec.stats.lookahead_crcs
        };
        let mut dec = FrameDecoder::default();
        trickle(&mut dec, &input, 1);
        assert_eq!(dec.stats.lookahead_crcs, whole);
        assert_eq!(whole, 3);
        // And trickled frames decode as they do whole.
        input = hex(LOGIN).repeat(3);
        let mut dec = FrameDecoder::default();
        assert_eq!(trickle(&mut dec, &input, 1), 3);
        assert_eq!(dec.stats.rejected(), 0);
    }
}
