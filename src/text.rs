//! Lossless text from results files that are not all UTF-8. Each line (or
//! value) is decoded on its own: valid UTF-8 stays as it is; a line that is
//! not valid UTF-8 is decoded byte by byte as Latin-1, as Autotest's users
//! have always seen it (the raw bytes went into a latin1 MySQL). Inside the
//! model such a byte `b >= 0x80` is held as the private-use character
//! `U+10FE00 + b` (an *escape*), so every string remembers which of its
//! characters were Latin-1 bytes and derived strings (substrings, merged
//! reasons) keep knowing it. At the edges the escapes are turned back:
//! [`stored`] gives the Latin-1 text that the warehouse stores and
//! `tko parse --json` shows as `{"$latin1": ...}`, [`bytes`] gives the
//! original bytes (file names, kernel hashes). A valid UTF-8 line that
//! itself contains an escape character is decoded as Latin-1 too, so an
//! escape always means a byte.

use crate::model::KeyMap;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::borrow::Cow;

/// The escape of byte `b` (`b >= 0x80`) is `char::from_u32(ESCAPE_BASE + b)`.
const ESCAPE_BASE: u32 = 0x10_FE00;

fn escape(b: u8) -> char {
    char::from_u32(ESCAPE_BASE + u32::from(b)).expect("U+10FE80..=U+10FEFF are scalar values")
}

/// The byte an escape stands for.
fn unescape(c: char) -> Option<u8> {
    let v = u32::from(c).checked_sub(ESCAPE_BASE)?;
    u8::try_from(v).ok().filter(|&b| b >= 0x80)
}

/// True if `s` holds Latin-1-decoded bytes.
pub fn is_latin1(s: &str) -> bool {
    // Escapes are encoded as F4 8F BA xx / F4 8F BB xx.
    s.as_bytes().contains(&0xF4) && s.chars().any(|c| unescape(c).is_some())
}

/// Decodes one line or value: borrowed when it is valid UTF-8 (without
/// escape characters), else each byte `>= 0x80` as its escape.
pub fn decode(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) if !is_latin1(s) => Cow::Borrowed(s),
        _ => Cow::Owned(
            raw.iter()
                .map(|&b| if b < 0x80 { char::from(b) } else { escape(b) })
                .collect(),
        ),
    }
}

/// Decodes one line or value that is owned already, without copying it
/// when it is valid UTF-8.
pub fn decode_owned(raw: Vec<u8>) -> String {
    match String::from_utf8(raw) {
        Ok(s) if !is_latin1(&s) => s,
        Ok(s) => decode(s.as_bytes()).into_owned(),
        Err(e) => decode(e.as_bytes()).into_owned(),
    }
}

/// The original bytes of a model string (escapes back to their bytes,
/// everything else as UTF-8).
pub fn bytes(s: &str) -> Cow<'_, [u8]> {
    if !is_latin1(s) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        match unescape(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// The text stored in the warehouse: unchanged for UTF-8 text; for text
/// holding Latin-1 bytes, its original bytes decoded as Latin-1 (so a
/// string mixing both is still reversible: encode as Latin-1 to get the
/// bytes back).
pub fn stored(s: &str) -> Cow<'_, str> {
    match bytes(s) {
        Cow::Borrowed(_) => Cow::Borrowed(s),
        Cow::Owned(b) => Cow::Owned(b.into_iter().map(char::from).collect()),
    }
}

/// Text for a diagnostic message: escapes, and their `{:?}` rendering
/// `\u{10feXX}`, are shown as `\xXX`.
pub fn for_message(s: &str) -> Cow<'_, str> {
    if !is_latin1(s) && !s.contains("\\u{10fe") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(b) = unescape(c) {
            out.push_str(&format!("\\x{b:02x}"));
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if let Some(hex) = rest
            .strip_prefix("\\u{10fe")
            .and_then(|r| r.get(..3))
            .filter(|h| h.ends_with('}'))
        {
            if let Ok(b) = u8::from_str_radix(&hex[..2], 16) {
                if b >= 0x80 {
                    out.push_str(&format!("\\x{b:02x}"));
                    rest = &rest[10..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Cow::Owned(out)
}

/// Serializes a model string: as a plain string, or as
/// `{"$latin1": <stored text>}` when it holds Latin-1 bytes.
pub fn serialize<S: Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
    if is_latin1(s) {
        let mut m = ser.serialize_map(Some(1))?;
        m.serialize_entry("$latin1", &stored(s))?;
        m.end()
    } else {
        ser.serialize_str(s)
    }
}

/// [`serialize`] for an optional string.
pub fn serialize_opt<S: Serializer>(s: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(s) => serialize(s, ser),
        None => ser.serialize_none(),
    }
}

/// A map key: as is, or `"$latin1:<stored text>"`.
pub fn key(s: &str) -> Cow<'_, str> {
    if is_latin1(s) {
        Cow::Owned(format!("$latin1:{}", stored(s)))
    } else {
        Cow::Borrowed(s)
    }
}

/// A string that serializes with [`serialize`].
struct Text<'a>(&'a str);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, ser)
    }
}

/// [`serialize`] for a map keyed by model strings, values as they are.
pub fn serialize_map<S: Serializer, V: Serialize>(
    map: &KeyMap<V>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    let mut m = ser.serialize_map(Some(map.len()))?;
    for (k, v) in map {
        m.serialize_entry(&key(k), v)?;
    }
    m.end()
}

/// [`serialize`] for a map of model strings to model strings.
pub fn serialize_text_map<S: Serializer>(map: &KeyMap<String>, ser: S) -> Result<S::Ok, S::Error> {
    let mut m = ser.serialize_map(Some(map.len()))?;
    for (k, v) in map {
        m.serialize_entry(&key(k), &Text(v))?;
    }
    m.end()
}

/// [`serialize`] for a list of model strings.
pub fn serialize_list<S: Serializer>(list: &[String], ser: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = ser.serialize_seq(Some(list.len()))?;
    for s in list {
        seq.serialize_element(&Text(s))?;
    }
    seq.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_borrowed_and_other_bytes_are_latin1() {
        assert!(matches!(decode("café".as_bytes()), Cow::Borrowed("café")));
        let d = decode(b"caf\xe9 \xff");
        assert!(is_latin1(&d));
        assert_eq!(stored(&d), "café ÿ");
        assert_eq!(&*bytes(&d), b"caf\xe9 \xff");
        assert_eq!(decode_owned(b"caf\xe9 \xff".to_vec()), d);
    }

    #[test]
    fn a_utf8_line_holding_an_escape_is_read_as_latin1() {
        let tricky = format!("x{}", escape(0xe9));
        let d = decode(tricky.as_bytes());
        assert_eq!(&*bytes(&d), tricky.as_bytes());
        assert_eq!(stored(&d).chars().count(), 5);
    }

    #[test]
    fn mixed_strings_stay_reversible() {
        let mixed = format!("é, {}", decode(b"\xe9"));
        let s = stored(&mixed);
        let back: Vec<u8> = s
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin1"))
            .collect();
        assert_eq!(back, "é, ".bytes().chain([0xe9]).collect::<Vec<u8>>());
    }

    #[test]
    fn messages_show_bytes() {
        let d = decode(b"a\xff");
        assert_eq!(
            for_message(&format!("{d:?} and {d}")),
            "\"a\\xff\" and a\\xff"
        );
    }

    #[test]
    fn json_forms() {
        let d = decode(b"\xe9t\xe9");
        let mut m = KeyMap::new();
        m.insert(d.to_string(), 1);
        #[derive(Serialize)]
        struct S<'a> {
            #[serde(serialize_with = "serialize")]
            s: &'a str,
            #[serde(serialize_with = "serialize_map")]
            m: KeyMap<i32>,
        }
        let json = serde_json::to_string(&S { s: &d, m }).expect("serializes");
        assert_eq!(json, r#"{"s":{"$latin1":"été"},"m":{"$latin1:été":1}}"#);
    }
}
