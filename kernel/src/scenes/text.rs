//! Text without a heap: a fixed-capacity string for names carried in parsed
//! lines and errors, and a formatting buffer for the numbers scenes print.

use core::fmt;

/// The longest prefix of `text` that fits `capacity` bytes and ends on a
/// character boundary.
pub(crate) fn truncate(text: &str, capacity: usize) -> &str {
    if text.len() <= capacity {
        return text;
    }
    let mut end = capacity;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A string of at most `N` bytes formatted in place; writes past the end are
/// cut at a character boundary.
#[derive(Clone, Copy)]
pub struct TextBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> TextBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        TextBuf {
            bytes: [0; N],
            len: 0,
        }
    }

    /// A buffer holding `text`, cut to fit.
    pub fn from_str_truncated(text: &str) -> Self {
        let mut buffer = Self::new();
        buffer.push_str(text);
        buffer
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        // Only whole characters of `&str`s are ever copied in.
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }

    /// Appends as much of `text` as fits, whole characters only.
    pub fn push_str(&mut self, text: &str) {
        let part = truncate(text, N - self.len);
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part.as_bytes());
        self.len += part.len();
    }
}

impl<const N: usize> Default for TextBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for TextBuf<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

impl<const N: usize> fmt::Display for TextBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for TextBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq for TextBuf<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for TextBuf<N> {}

/// A short owned name (a connector's, or an unknown word in an error): 64
/// bytes at most.
pub type Label = TextBuf<64>;

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn writes_past_capacity_are_cut_on_a_character_boundary() {
        let mut buffer = TextBuf::<5>::new();
        let tail = "cdé";
        write!(buffer, "ab{tail}").unwrap();
        assert_eq!(buffer.as_str(), "abcd");
        buffer.push_str("x");
        assert_eq!(buffer.as_str(), "abcdx");
        buffer.push_str("y");
        assert_eq!(buffer.as_str(), "abcdx");
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(Label::from_str_truncated("conn").as_str(), "conn");
    }
}
