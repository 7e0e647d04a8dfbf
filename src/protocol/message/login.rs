//! 0x01 login: IMEI(8, BCD) + type code(2) + time zone / language(2).

use bytes::{BufMut, BytesMut};

use crate::protocol::cursor::Cursor;
use crate::protocol::imei::Imei;

use super::error::MessageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    pub imei: Imei,
    /// The model code, e.g. 0x2404. Older firmware stops after the IMEI, and
    /// the reference accepts that, so the two trailing fields are optional.
    pub type_code: Option<u16>,
    pub tz_language: Option<TzLanguage>,
}

impl Login {
    pub(super) fn decode(content: &[u8]) -> Result<Self, MessageError> {
        let mut c = Cursor::new("login", content);
        let bcd = c.array::<8>("imei")?;
        let imei = Imei::from_bcd(&bcd).map_err(|_| c.invalid("imei", "not BCD digits"))?;
        let type_code = c.opt_u16();
        let tz_language = c.opt_u16().map(TzLanguage);
        Ok(Self {
            imei,
            type_code,
            tz_language,
        })
    }

    pub(super) fn content_len(&self) -> usize {
        match (self.type_code, self.tz_language) {
            (None, _) => 8,
            (Some(_), None) => 10,
            (Some(_), Some(_)) => 12,
        }
    }

    pub(super) fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.imei.to_bcd());
        if let Some(t) = self.type_code {
            out.put_u16(t);
            if let Some(tz) = self.tz_language {
                out.put_u16(tz.0);
            }
        }
    }
}

/// The login's time zone and language word.
///
/// Bits 15–4: the zone as hours × 100 + minutes (800 = UTC+8, 530 = UTC+5:30,
/// the GT06 manual's reading); bit 3: set for West; bits 1–0: language
/// (1 Chinese, 2 English), masked with 0x03 as the reference does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TzLanguage(pub u16);

impl TzLanguage {
    pub fn new(offset_minutes: i16, language: u8) -> Self {
        let abs = offset_minutes.unsigned_abs();
        let value = (abs / 60) * 100 + abs % 60;
        let west = if offset_minutes < 0 { 0x08 } else { 0 };
        Self(((value & 0x0FFF) << 4) | west | u16::from(language & 0x03))
    }

    /// Minutes east of UTC.
    pub fn offset_minutes(self) -> i16 {
        let value = (self.0 >> 4) & 0x0FFF;
        let minutes = (value / 100 * 60 + value % 100) as i16;
        if self.0 & 0x08 != 0 {
            -minutes
        } else {
            minutes
        }
    }

    /// 1 Chinese, 2 English.
    pub fn language(self) -> u8 {
        (self.0 & 0x03) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::Message;

    #[test]
    fn full_login() {
        let content = [
            0x03, 0x53, 0x41, 0x90, 0x32, 0x98, 0x14, 0x48, 0x24, 0x04, 0x32, 0x01,
        ];
        let Message::Login(l) = Message::decode_content(0x01, &content).unwrap() else {
            panic!()
        };
        assert_eq!(l.imei.to_string(), "353419032981448");
        assert_eq!(l.type_code, Some(0x2404));
        let tz = l.tz_language.unwrap();
        assert_eq!((tz.offset_minutes(), tz.language()), (8 * 60, 1));
        assert_eq!(TzLanguage::new(480, 1), tz);
    }

    #[test]
    fn west_zone_and_english() {
        // 0x1F4A: 500 (UTC-5:00), West bit, language 2.
        let tz = TzLanguage(0x1F4A);
        assert_eq!((tz.offset_minutes(), tz.language()), (-300, 2));
        assert_eq!(TzLanguage::new(-300, 2), tz);
        assert_eq!(TzLanguage::new(330, 2).offset_minutes(), 330);
    }

    #[test]
    fn imei_only_login_and_errors() {
        let l = Login::decode(&[0x03, 0x53, 0x41, 0x90, 0x32, 0x98, 0x14, 0x48]).unwrap();
        assert_eq!((l.type_code, l.tz_language), (None, None));
        let e = Login::decode(&[0x03, 0x53, 0x41]).unwrap_err();
        assert_eq!((e.message, e.offset), ("login", 0));
        let e = Login::decode(&[0x0F; 8]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "login: imei invalid: not BCD digits at content offset 8"
        );
    }
}
