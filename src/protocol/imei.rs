//! The badge's identity.

use std::fmt;
use std::str::FromStr;

/// A device IMEI: 15 decimal digits (16 for the rare IMEISV), kept as a
/// number so that it is `Copy`, hashes fast and is stored as `UInt64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Imei(u64);

/// Largest value that fits the 8-byte BCD field: 16 digits.
const MAX: u64 = 9_999_999_999_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImeiError {
    #[error("BCD digit 0x{0:X} is not a decimal digit")]
    NotBcd(u8),
    #[error("an IMEI has 15 or 16 digits")]
    Length,
    #[error("an IMEI has only decimal digits")]
    NotDigits,
}

impl Imei {
    pub fn new(value: u64) -> Result<Self, ImeiError> {
        if value > MAX {
            return Err(ImeiError::Length);
        }
        Ok(Self(value))
    }

    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Reads the login's 8-byte BCD field: 16 digits, the first of which is
    /// padding for a 15-digit IMEI. Nibbles above 9 are rejected, where the
    /// reference server kept them as hex letters.
    pub fn from_bcd(bcd: &[u8; 8]) -> Result<Self, ImeiError> {
        let mut value = 0u64;
        for &byte in bcd {
            for nibble in [byte >> 4, byte & 0x0F] {
                if nibble > 9 {
                    return Err(ImeiError::NotBcd(nibble));
                }
                value = value * 10 + u64::from(nibble);
            }
        }
        Ok(Self(value))
    }

    pub fn to_bcd(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        let mut v = self.0;
        for byte in out.iter_mut().rev() {
            let lo = (v % 10) as u8;
            v /= 10;
            let hi = (v % 10) as u8;
            v /= 10;
            *byte = (hi << 4) | lo;
        }
        out
    }

    /// The Luhn check digit for a 14-digit body, as the 15th IMEI digit.
    pub fn luhn_digit(body: u64) -> u8 {
        let mut sum = 0u32;
        let mut v = body;
        let mut double = true;
        while v > 0 {
            let mut d = (v % 10) as u32;
            v /= 10;
            if double {
                d *= 2;
                if d > 9 {
                    d -= 9;
                }
            }
            sum += d;
            double = !double;
        }
        ((10 - sum % 10) % 10) as u8
    }

    /// A 15-digit IMEI with a valid Luhn check digit from a 14-digit body
    /// (TAC + serial).
    pub fn with_check_digit(body: u64) -> Result<Self, ImeiError> {
        if body >= 100_000_000_000_000 {
            return Err(ImeiError::Length);
        }
        Ok(Self(body * 10 + u64::from(Self::luhn_digit(body))))
    }

    /// Whether the last digit is the Luhn check digit of the others.
    pub fn luhn_valid(self) -> bool {
        Self::luhn_digit(self.0 / 10) == (self.0 % 10) as u8
    }
}

impl fmt::Display for Imei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:015}", self.0)
    }
}

impl fmt::Debug for Imei {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Imei({self})")
    }
}

impl FromStr for Imei {
    type Err = ImeiError;

    fn from_str(s: &str) -> Result<Self, ImeiError> {
        if !(15..=16).contains(&s.len()) {
            return Err(ImeiError::Length);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ImeiError::NotDigits);
        }
        s.parse::<u64>().map(Self).map_err(|_| ImeiError::NotDigits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcd_with_one_padding_zero_gives_fifteen_digits() {
        let imei = Imei::from_bcd(&[0x03, 0x53, 0x41, 0x90, 0x32, 0x98, 0x14, 0x48]).unwrap();
        assert_eq!(imei.to_string(), "353419032981448");
        assert_eq!(
            imei.to_bcd(),
            [0x03, 0x53, 0x41, 0x90, 0x32, 0x98, 0x14, 0x48]
        );
    }

    #[test]
    fn leading_zero_digits_survive() {
        let imei = Imei::from_bcd(&[0x00, 0x12, 0x34, 0x56, 0x78, 0x90, 0x12, 0x34]).unwrap();
        assert_eq!(imei.to_string(), "012345678901234");
        assert_eq!("012345678901234".parse::<Imei>().unwrap(), imei);
    }

    #[test]
    fn hex_nibbles_are_rejected() {
        assert_eq!(
            Imei::from_bcd(&[0x0A, 0, 0, 0, 0, 0, 0, 0]),
            Err(ImeiError::NotBcd(0xA))
        );
    }

    #[test]
    fn luhn() {
        // Doubling every second digit from the right: 8+4+2+8+9+2+6+0+9+1+8+3+1+3 = 64.
        assert_eq!(Imei::luhn_digit(35341903298144), 6);
        assert!("353419032981446".parse::<Imei>().unwrap().luhn_valid());
        assert_eq!(
            Imei::with_check_digit(49015420323751).unwrap().to_string(),
            "490154203237518"
        );
        assert!(!"353419032981449".parse::<Imei>().unwrap().luhn_valid());
    }
}
