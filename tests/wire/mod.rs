//! The expected side of the wire tests: frames built byte by byte with an
//! independent bit-by-bit CRC, so that a bug in the crate's own encoder or
//! CRC cannot make a wrong reply look right. Shared by the server and
//! control-socket tests.
#![allow(dead_code)]

/// CRC-16/X-25 (CRC-ITU as the GT06 manual calls it), bit by bit.
pub fn crc_x25(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A server frame as the reference builds it: `78 78` and a one-byte length
/// (protocol + content + serial + CRC), or `79 79` and two bytes when that
/// does not fit; the CRC covers the length field through the serial.
pub fn reply_frame(protocol: u8, content: &[u8], serial: u16) -> Vec<u8> {
    let len = 1 + content.len() + 2 + 2;
    let mut v = if len <= 0xFF {
        vec![0x78, 0x78, len as u8]
    } else {
        vec![0x79, 0x79, (len >> 8) as u8, len as u8]
    };
    v.push(protocol);
    v.extend_from_slice(content);
    v.extend_from_slice(&serial.to_be_bytes());
    let crc = crc_x25(&v[2..]);
    v.extend_from_slice(&crc.to_be_bytes());
    v.extend_from_slice(&[0x0D, 0x0A]);
    v
}

pub fn ack(protocol: u8, serial: u16) -> Vec<u8> {
    reply_frame(protocol, &[], serial)
}

pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}
